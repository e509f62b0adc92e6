"""The `cronsup` command line: a thin layer over the library, with human-facing output."""

from __future__ import annotations

import datetime as dt
import difflib
import itertools
import json
import sys

import click

from cronsup import __version__, importer, jobsfile, paths, schedule
from cronsup.model import AfterJobs, Cron, Every, JobsFile, Reboot

EXIT_INVALID = 1
EXIT_USAGE = 2
EXIT_NO_DAEMON = 3


def fail(message: str, code: int = EXIT_INVALID) -> None:
    click.echo(f"cronsup: {message}", err=True)
    sys.exit(code)


def common_options(func):
    """--jobs and --db, which every command takes (and CRONSUP_JOBS / CRONSUP_DB)."""
    func = click.option(
        "--db", "db", envvar="CRONSUP_DB", metavar="PATH", default=paths.default_db,
        show_default="root: /var/lib/cronsup/runs.db, others: ~/.local/state/cronsup/runs.db",
        help="The run log; a daemon and the commands given the same --db find each other.",
    )(func)
    func = click.option(
        "--jobs", "jobs_path", envvar="CRONSUP_JOBS", metavar="FILE", default=paths.default_jobs,
        show_default="root: /etc/cronsup/jobs, others: ~/.config/cronsup/jobs",
        help="The jobs file.",
    )(func)
    return func


def load_jobs(path: str, system: bool = False) -> JobsFile:
    """The jobs file, or exit 1 with every error as FILE:LINE: message."""
    try:
        return jobsfile.load(path, system=system)
    except jobsfile.JobsfileErrors as e:
        for error in e.errors:
            click.echo(str(error), err=True)
        sys.exit(EXIT_INVALID)
    except OSError as e:
        fail(f"cannot read the jobs file {path}: {e.strerror}")
    raise AssertionError("unreachable")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="cronsup")
def main() -> None:
    """A crontab-compatible supervisor daemon: your crontab, plus timeouts, overlap locking,
    retries, job chains and a record of every run.

    \b
    Start here:
      cronsup import /etc/crontab --system > jobs   # turn a crontab into a jobs file
      cronsup check jobs                            # validate it
      cronsup daemon --jobs jobs                    # run it
      cronsup status                                # what ran, what runs next
      cronsup logs backup --failed                  # one job's history
    """


@main.command()
@click.argument("files", nargs=-1, metavar="[FILE ...]")
@click.option("--system", is_flag=True, help="System crontab format: a user field after the five time fields.")
@common_options
def check(files: tuple[str, ...], system: bool, jobs_path: str, db: str) -> None:
    """Validate jobs files (default: --jobs) and list their jobs.

    Exit 0 when all are valid; exit 1 with every error as FILE:LINE: message on stderr.

    \b
    Example:
      cronsup check /etc/cronsup/jobs
      cronsup check --system /etc/crontab /etc/cron.d/*
    """
    failed = False
    for path in files or (jobs_path,):
        try:
            jf = jobsfile.load(path, system=system)
        except jobsfile.JobsfileErrors as e:
            for error in e.errors:
                click.echo(str(error), err=True)
            failed = True
            continue
        except OSError as e:
            click.echo(f"{path}: cannot read: {e.strerror}", err=True)
            failed = True
            continue
        count = len(jf.jobs)
        click.echo(f"{path}: {count} job{'s' if count != 1 else ''}, no errors")
        for job in jf.jobs:
            click.echo(f"  {job.name:<24} {job.schedule.text:<16} {_one_line(job.command)}")
    if failed:
        sys.exit(EXIT_INVALID)


def _one_line(text: str, width: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


@main.command("next")
@click.argument("target", metavar="EXPRESSION-or-JOB")
@click.option("--from", "start", metavar="ISO8601", help="Start after this instant (default: now). Without an offset it is read in the zone.")
@click.option("-n", "count", default=5, show_default=True, type=click.IntRange(1, 10000), help="How many fire times.")
@click.option("--tz", metavar="ZONE", help="IANA zone (default: the job's timezone or CRON_TZ, else the system's).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@common_options
def next_(target: str, start: str | None, count: int, tz: str | None, as_json: bool,
          jobs_path: str, db: str) -> None:
    """The next fire times of a cron expression or of a job in the jobs file.

    Times follow Debian cron's rules, daylight-saving changes included.

    \b
    Example:
      cronsup next '30 2 * * *' --tz Europe/Berlin --from 2026-10-24T00:00 -n 3
      cronsup next backup
    """
    zone_name = tz
    if _looks_like_expression(target):
        try:
            sched = schedule.parse_schedule(target)
        except schedule.ScheduleError as e:
            fail(f"{target!r}: {e}", EXIT_USAGE)
    else:
        jf = load_jobs(jobs_path)
        job = jf.get(target)
        if job is None:
            close = difflib.get_close_matches(target, jf.names, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            fail(f"no job named {target!r} in {jobs_path}{hint}", EXIT_USAGE)
        sched = job.schedule
        zone_name = tz or job.timezone
    try:
        zone = schedule.load_zone(zone_name)
    except ValueError as e:
        fail(str(e), EXIT_USAGE)
    after = _parse_instant(start, zone) if start else dt.datetime.now(zone)
    if isinstance(sched, (AfterJobs, Reboot)):
        what = "once per boot" if isinstance(sched, Reboot) else "after the jobs it waits for succeed"
        fail(f"{target!r} has no fire times: it runs {what}")
    if isinstance(sched, Every):
        step = dt.timedelta(seconds=sched.seconds)
        times = [(after + step * (i + 1)).astimezone(zone) for i in range(count)]
        note = "counted here from --from or now; the daemon counts from its start"
        click.echo(f"cronsup: @every: {note}", err=True)
    else:
        assert isinstance(sched, Cron)
        times = list(itertools.islice(schedule.fire_times(sched, after, zone), count))
        if not times:
            click.echo(f"cronsup: {sched.text!r} never fires", err=True)
    stamps = [t.isoformat() for t in times]
    if as_json:
        click.echo(json.dumps(stamps))
    else:
        for s in stamps:
            click.echo(s)


def _looks_like_expression(text: str) -> bool:
    return text[:1] in ("@", "*") or text[:1].isdigit() or " " in text.strip()


def _parse_instant(text: str, zone: dt.tzinfo) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        fail(f"--from {text!r} is not an ISO 8601 time such as 2026-11-25T02:00 or "
             "2026-11-25T02:00:00+01:00", EXIT_USAGE)
    return value.replace(tzinfo=zone) if value.tzinfo is None else value


@main.command("import")
@click.argument("crontabs", nargs=-1, metavar="[CRONTAB ...]")
@click.option("--system", is_flag=True, help="System format (/etc/crontab, /etc/cron.d/*): a user field after the time fields.")
@common_options
def import_(crontabs: tuple[str, ...], system: bool, jobs_path: str, db: str) -> None:
    """Print a jobs file equivalent to the crontabs given (or standard input).

    Every job gets a pinned name in a [job.NAME] block; schedules and commands are unchanged.

    \b
    Example:
      crontab -l | cronsup import > ~/.config/cronsup/jobs
      cronsup import --system /etc/crontab /etc/cron.d/* > /etc/cronsup/jobs
    """
    sources = []
    for path in crontabs or ("-",):
        try:
            if path == "-":
                sources.append(("<stdin>", sys.stdin.buffer.read().decode("utf-8", "surrogateescape")))
            else:
                with open(path, "rb") as f:
                    sources.append((path, f.read().decode("utf-8", "surrogateescape")))
        except OSError as e:
            fail(f"cannot read {path}: {e.strerror}")
    try:
        click.echo(importer.convert(sources, system=system), nl=False)
    except jobsfile.JobsfileErrors as e:
        for error in e.errors:
            click.echo(str(error), err=True)
        sys.exit(EXIT_INVALID)
