"""Placeholder until the commands land."""
import click


@click.group()
def main() -> None:
    """cronsup: a crontab-compatible supervisor daemon."""
