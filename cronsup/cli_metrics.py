"""`cronsup metrics [--textfile DIR]`: the daemon's Prometheus series, read from the run log."""

from __future__ import annotations

import os
import sys

import click

from cronsup.cli import common_options, fail

TEXTFILE_NAME = "cronsup.prom"


@click.command()
@click.option("--textfile", metavar="DIR",
              help=f"Write DIR/{TEXTFILE_NAME} atomically (for node_exporter's textfile collector) "
                   "instead of printing.")
@common_options
def metrics(textfile: str | None, jobs_path: str, db: str) -> None:
    """Print the Prometheus series of `daemon --metrics`, read from the run log.

    Needs no running daemon: it reads what the last one recorded.

    \b
    Example:
      cronsup metrics
      cronsup metrics --textfile /var/lib/prometheus/node-exporter   # from cron or a timer
    """
    from cronsup.metrics import StoreCollector, exposition, registry
    from cronsup.store import RunLogError, open_store

    try:
        reader = open_store(db, readonly=True)
    except RunLogError as e:
        fail(str(e))
    with reader:
        collector = StoreCollector(lambda: reader)
        try:
            if textfile is None:
                sys.stdout.buffer.write(exposition(collector.read()))  # the text /metrics serves
                return
            _write_textfile(textfile, registry(collector))
        except RunLogError as e:
            fail(str(e))


def _write_textfile(directory: str, reg) -> None:
    from prometheus_client import write_to_textfile

    if not os.path.isdir(directory):
        fail(f"--textfile {directory}: no such directory (node_exporter's "
             "--collector.textfile.directory)", 2)
    path = os.path.join(directory, TEXTFILE_NAME)
    try:
        # A temporary file in DIR renamed over the old one: node_exporter never reads half.
        write_to_textfile(path, reg)
    except OSError as e:
        fail(f"cannot write {path}: {e.strerror or e}")
