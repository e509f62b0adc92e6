"""`cronsup takeover` and `cronsup release`: make cronsup the server's cron, and undo it."""

from __future__ import annotations

import os
import sys

import click

from cronsup import fmt, clock, takeover
from cronsup.servicemgr import ServiceError, detect

ROOT_HELP = "Read cron's files and keep the record under DIR instead of / (tests, chroots)."


def _root(cron_root: str | None) -> str:
    if cron_root is None and os.geteuid() != 0:
        click.echo("cronsup: takeover and release change system services: run them as root", err=True)
        sys.exit(1)
    return os.path.abspath(cron_root or "/")


def _sources(root: str) -> int:
    """Print every source with its verdict; the number that would be skipped."""
    sources = takeover.source_verdicts(root)
    click.echo("cron's files, as `cronsup daemon --cron` reads them:")
    if not sources:
        click.echo("  (none: no /etc/crontab, /etc/cron.d or user crontabs)")
    width = max((len(s.path) for s in sources), default=0)
    for s in sources:
        said = s.reason if s.verdict != "ok" else f"{s.jobs} job{'s' if s.jobs != 1 else ''}"
        if s.guarded:
            lines = ", ".join(map(str, s.guarded))
            said += (f"; line{'s' if len(s.guarded) > 1 else ''} {lines} guarded by "
                     "/run/systemd/system (they do nothing where systemd runs, as under cron)")
        click.echo(f"  {s.verdict:<8} {s.path:<{width}}  {said}")
    return sum(s.verdict == "skipped" for s in sources)


def _jobs_file(root: str) -> str | None:
    """Why /etc/cronsup/jobs would not run, or None."""
    from cronsup import jobsfile

    path = takeover.under(root, "etc/cronsup/jobs")
    if not os.path.exists(path):
        return None
    try:
        jobsfile.load(path, as_root=os.geteuid() == 0)
    except jobsfile.JobsfileErrors as e:
        return e.summary
    except (jobsfile.JobsfileRefused, OSError) as e:
        return str(e)
    return None


@click.command("takeover")
@click.option("--dry-run", is_flag=True, help="Check and say what would be done; change nothing.")
@click.option("--cron-root", metavar="DIR", help=ROOT_HELP)
def takeover_(dry_run: bool, cron_root: str | None) -> None:
    """Make cronsup this server's cron: check every file cron reads, stop, disable and mask
    cron.service (sysvinit: its init script), enable and start cronsup with --cron.

    Refuses, changing nothing, while any of cron's files would be skipped. cron's jobs still
    running are listed, not killed. Running it again changes nothing; `cronsup release`
    puts cron back as it was.

    \b
    Examples:
      cronsup takeover --dry-run    # what it would do
      cronsup takeover
    """
    root = _root(cron_root)
    skipped = _sources(root)
    bad_jobs = _jobs_file(root)
    if bad_jobs:
        click.echo(f"  skipped  /etc/cronsup/jobs  {bad_jobs}")
        skipped += 1
    if skipped:
        click.echo(f"cronsup: takeover refused: {skipped} file{'s' if skipped > 1 else ''} would be "
                   "skipped (reasons above). Fix or remove them, then run takeover again; cron "
                   "is left as it is.", err=True)
        sys.exit(1)
    manager = detect(root, dry_run)
    record = _read_record(root)
    if record is not None:
        click.echo(f"cronsup took over cron on {fmt.stamp(record.taken_at, clock.wall())}; "
                   "checking that it still holds")
    daemons = takeover.cron_daemons(root)
    jobs = takeover.cron_jobs(daemons)
    notes: list[str] = []
    try:
        takeover.take_over(manager, root, notes.append)
    except ServiceError as e:
        _said(manager, notes, dry_run, failed=True)
        click.echo(f"cronsup: takeover failed: {e}", err=True)
        if not dry_run:
            _roll_back(root)
        sys.exit(1)
    _said(manager, notes, dry_run)
    running = [line for line in map(takeover.describe, jobs) if line]
    if running:
        click.echo("cron's jobs still running (left to finish; cronsup runs them from their "
                   "next time):" if not dry_run else "cron's jobs running now (takeover leaves "
                   "them to finish):")
        click.echo(f"{'PID':>7}  {'USER':<10} {'STARTED':<18} COMMAND")
        for line in running:
            click.echo(line)
    if dry_run:
        click.echo("dry run: nothing was changed")
    else:
        click.echo(f"cronsup runs cron's files now ({manager.name}); `cronsup status` shows them, "
                   "`cronsup release` gives them back to cron")


def _read_record(root: str):
    try:
        return takeover.read_record(root)
    except ServiceError as e:
        click.echo(f"cronsup: {e}", err=True)
        sys.exit(1)


def _said(manager, notes: list[str], dry_run: bool, failed: bool = False) -> None:
    for note in notes:
        click.echo(f"  {note}")
    if not manager.done and not failed:
        click.echo("  nothing to change" if not dry_run else "  nothing would change")
    for command in manager.done:
        click.echo(f"  {'would run' if dry_run else 'ran'}: {command}")
    manager.done.clear()
    notes.clear()


def _roll_back(root: str) -> None:
    record = takeover.read_record(root)
    if record is None:
        return
    manager = detect(root)
    notes: list[str] = []
    try:
        takeover.release(manager, root, record, notes.append)
    except ServiceError as e:
        _said(manager, notes, False, failed=True)
        click.echo(f"cronsup: and putting cron back failed too: {e}; the record of how it was "
                   f"is /{takeover.STATE} (run `cronsup release` once the cause is fixed)", err=True)
        return
    click.echo("put cron back as it was:")
    _said(manager, notes, False)


@click.command("release")
@click.option("--cron-root", metavar="DIR", help=ROOT_HELP)
def release_(cron_root: str | None) -> None:
    """Give the server back to cron, exactly as it was before `cronsup takeover`: cronsup's
    --cron goes and its service is stopped and disabled (unless it ran before), then cron is
    unmasked, enabled and started as it was. Running it again changes nothing.

    \b
    Example:
      cronsup release
    """
    root = _root(cron_root)
    record = _read_record(root)
    if record is None:
        click.echo(f"cron is not taken over by cronsup (no /{takeover.STATE}): nothing to release")
        return
    manager = detect(root)
    if manager.name != record.manager:
        click.echo(f"cronsup: takeover was done with {record.manager}, but this system runs "
                   f"{manager.name} now; restore cron by hand (/{takeover.STATE} says how it was)",
                   err=True)
        sys.exit(1)
    notes: list[str] = []
    try:
        takeover.release(manager, root, record, notes.append)
    except ServiceError as e:
        _said(manager, notes, False, failed=True)
        click.echo(f"cronsup: release failed: {e}; run it again once that is fixed", err=True)
        sys.exit(1)
    _said(manager, notes, False)
    click.echo(f"cron is back as it was: {_state_words(record.cron)}")


def _state_words(state) -> str:
    if state.enabled == "not-found":
        return "not installed"
    return f"{state.enabled}, {'running' if state.active else 'stopped'}"
