"""How `check --cron` and `status` show cron's own files: each with its verdict and reason."""

from __future__ import annotations

import os

import click

from cronsup import cronfiles
from cronsup.cronfiles import GUARD_NOTE, Verdict
from cronsup.model import JobsFile


def check_cron(root: str, jf: JobsFile | None) -> bool:
    """Print every one of cron's files under `root` and its jobs; False when one is skipped."""
    from cronsup.cli_jobs import _one_line

    found = cronfiles.check_sources(root, jf.cron_options if jf else None,
                                    taken=jf.names if jf else ())
    if not found.sources:
        click.echo(f"no crontab under {root} (etc/crontab, etc/cron.d, var/spool/cron/crontabs)")
    for source in found.sources:
        if source.verdict is Verdict.OK:
            count = len(source.jobs)
            who = f", as {source.user}" if source.user else ""
            click.echo(f"{source.path}: {count} job{'s' if count != 1 else ''}{who}, no errors")
            for job in source.jobs:
                user = "" if source.user else f"{job.user:<10} "
                click.echo(f"  {job.name:<24} {job.schedule.text:<16} {user}{_one_line(job.command)}")
            if source.guarded:
                lines = ", ".join(map(str, source.guarded))
                click.echo(f"  line{'s' if len(source.guarded) > 1 else ''} {lines}: {GUARD_NOTE}")
        elif source.verdict is Verdict.IGNORED:
            click.echo(f"{source.path}: ignored: {source.reason}")
        else:
            click.echo(f"{source.path}: SKIPPED: {source.reason}", err=True)
            for error in source.errors:
                click.echo(error, err=True)
    return not found.refused


def status_lines(info: dict, style) -> list[str]:
    """The `status` lines for cron's files, from what the daemon stored (cronlive)."""
    sources = info.get("sources", [])
    counts = {v: sum(1 for s in sources if s["verdict"] == v) for v in Verdict}
    root = info.get("root", "/")
    where = "" if root == "/" else f" under {root}"
    lines = [f"cron files {len(sources)} file{'' if len(sources) == 1 else 's'}{where}: "
             f"{counts[Verdict.OK]} read, {counts[Verdict.IGNORED]} ignored, "
             f"{counts[Verdict.SKIPPED]} skipped"]
    for s in sources:
        if s["verdict"] == Verdict.SKIPPED:
            lines.append(style(f"  SKIPPED {s['path']}: {s['reason']}", fg="red", bold=True))
            lines += [style(f"    {e}", fg="red") for e in s["errors"]]
        elif s["verdict"] == Verdict.IGNORED:
            lines.append(f"  ignored {s['path']}: {s['reason']}")
    guarded = [(s["path"], line) for s in sources for line in s.get("guarded_lines", [])]
    if guarded:
        here = ("systemd runs here, so they do nothing" if info.get("systemd")
                else "systemd does not run here, so they do their work")
        lines.append(f"  {len(guarded)} line{'s' if len(guarded) > 1 else ''} guarded by "
                     f"/run/systemd/system ({here}): "
                     + ", ".join(f"{os.path.basename(p)}:{n}" for p, n in guarded))
    return lines
