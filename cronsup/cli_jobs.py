"""`check`, `next` and `import`: the jobs file and schedules, looked at without a daemon."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import sys

import click

from cronsup import suggest
from cronsup.model import AfterJobs, Cron, Every, JobsFile, Reboot
from cronsup.cli import (EXIT_INVALID, EXIT_USAGE, _cron_root, common_options, cron_options,
                         fail, importer, jobsfile, load_jobs, schedule)


@click.command()
@click.argument("files", nargs=-1, metavar="[FILE ...]")
@click.option("--system", is_flag=True, help="System crontab format: a user field after the five time fields.")
@cron_options
@common_options
def check(files: tuple[str, ...], system: bool, jobs_path: str, db: str, cron: bool,
          cron_root: str | None) -> None:
    """Validate jobs files (default: --jobs) and list their jobs.

    Exit 0 when all are valid; exit 1 with every error as FILE:LINE: message on stderr.
    Warnings (FILE:LINE: warning: message, exit status unchanged) point at what would not
    run as meant on this host: a user, shell or workdir that does not exist here, and a %
    that cuts a command short, as in $(date +%F) (cron starts the job's input there).

    \b
    Example:
      cronsup check /etc/cronsup/jobs
      cronsup check --system /etc/crontab /etc/cron.d/*
      cronsup check --cron     # the jobs file and cron's files, as `daemon --cron` reads them

    With --cron, every one of cron's files is listed as read, ignored (cron ignores it too) or
    skipped (cron would refuse it: owner, mode, errors); exit 1 when one is skipped.
    """
    from cronsup import hostcheck

    cron_root = _cron_root(cron, cron_root)
    failed = False
    checked: list[JobsFile] = []
    for path in files or (jobs_path,):
        if cron_root is not None and not files and not os.path.exists(path):
            continue  # daemon --cron runs without a jobs file
        try:
            # As root, the daemon's own checks: what it would refuse, check refuses.
            jf = jobsfile.load(path, system=system, as_root=os.geteuid() == 0)
        except jobsfile.JobsfileErrors as e:
            for error in e.errors:
                click.echo(str(error), err=True)
            failed = True
            continue
        except jobsfile.JobsfileRefused as e:
            click.echo(str(e), err=True)
            failed = True
            continue
        except OSError as e:
            click.echo(f"{path}: cannot read: {e.strerror}", err=True)
            failed = True
            continue
        _hint_system(path, jf, system)
        for warning in sorted([*jf.warnings, *hostcheck.warnings(jf, system)], key=lambda w: w.line):
            click.echo(str(warning), err=True)
        count = len(jf.jobs)
        click.echo(f"{path}: {count} job{'s' if count != 1 else ''}, no errors")
        for job in jf.jobs:
            click.echo(f"  {job.name:<24} {job.schedule.text:<16} {_one_line(job.command)}")
        checked.append(jf)
    if cron_root is not None:
        from cronsup import cli_cron

        jf = checked[0] if checked and not files else None
        failed |= not cli_cron.check_cron(cron_root, jf)
    if failed:
        sys.exit(EXIT_INVALID)


def _hint_system(path: str, jf: JobsFile, system: bool) -> None:
    """Warn when a file read as a user crontab looks like a system one (/etc/crontab)."""
    first = _user_words(jf, system)
    if first:
        click.echo(f"{path}: warning: every command starts with a user name ({', '.join(sorted(first))}); "
                   "if this is a system crontab (/etc/crontab, /etc/cron.d/*), add --system", err=True)


def _user_words(jf: JobsFile, system: bool) -> set[str]:
    """The first words of the commands of a file read as a user crontab, when every one is
    a user name here (as in /etc/crontab's `root cd / && ...`); else the empty set."""
    import pwd

    if system or not jf.jobs:
        return set()
    first = {job.command.split(None, 1)[0] for job in jf.jobs if job.command.strip()}
    try:
        for word in first:
            pwd.getpwnam(word)
    except KeyError:
        return set()
    return first


def _one_line(text: str, width: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


@click.command("next")
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
    from cronsup import clock

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
            fail(f"no job named {target!r} in {jobs_path}{suggest.did_you_mean(target, jf.names)}",
                 EXIT_USAGE)
        sched = job.schedule
        zone_name = tz or job.timezone
    try:
        zone = schedule.load_zone(zone_name)
    except ValueError as e:
        fail(str(e), EXIT_USAGE)
    # From now, whole seconds: `next '@every 20s'` would otherwise print microseconds.
    after = _parse_instant(start, zone) if start else clock.local_now(zone).replace(microsecond=0)
    if isinstance(sched, (AfterJobs, Reboot)):
        what = "once per boot" if isinstance(sched, Reboot) else "after the jobs it waits for succeed"
        fail(f"{target!r} has no fire times: it runs {what}")
    if isinstance(sched, Every):
        step = dt.timedelta(seconds=sched.seconds)
        times = [(after + step * (i + 1)).astimezone(zone) for i in range(count)]
        note = "counted here from --from or now; the daemon counts from the job's last start"
        click.echo(f"cronsup: @every: {note}", err=True)
    else:
        assert isinstance(sched, Cron)
        times = list(itertools.islice(schedule.fire_times(sched, after, zone), count))
        if not times:
            click.echo(f"cronsup: {schedule.never_fires(sched) or f'{sched.text!r} never fires'}", err=True)
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


@click.command("import")
@click.argument("crontabs", nargs=-1, metavar="[CRONTAB ...]")
@click.option("--system", is_flag=True, help="System format (/etc/crontab, /etc/cron.d/*): a user field after the time fields.")
@common_options
def import_(crontabs: tuple[str, ...], system: bool, jobs_path: str, db: str) -> None:
    """Print a jobs file equivalent to the crontabs given (or standard input).

    Every job gets a pinned name in a [job.NAME] block, one a person would write
    (`cron-daily` for `run-parts /etc/cron.daily`, `sa1` for `debian-sa1`); schedules and
    commands are unchanged. Where MAILTO was unset, each job gets the `mailto` cron used
    (the crontab's owner; for a system line, its user). With --system, files of cron.d
    that cron ignores (a name with a dot, as `sysstat.dpkg-old`) are skipped with a note.
    A file that looks like a system crontab read without --system is refused (exit 1).

    \b
    Example:
      crontab -l | cronsup import > ~/.config/cronsup/jobs
      cronsup import --system /etc/crontab /etc/cron.d/* > /etc/cronsup/jobs
    """
    import pwd
    import shutil

    sources = []
    owners: dict[str, str] = {}  # whom cron mailed when MAILTO was unset
    for path in crontabs or ("-",):
        if system and path != "-" and (why := importer.cron_ignores(path)):
            click.echo(f"cronsup: skipping {path}: {why}", err=True)
            continue
        try:
            if path == "-":
                sources.append(("<stdin>", sys.stdin.buffer.read().decode("utf-8", "surrogateescape")))
                uid = os.geteuid()  # `crontab -l | cronsup import`: the caller's crontab
            else:
                with open(path, "rb") as f:
                    sources.append((path, f.read().decode("utf-8", "surrogateescape")))
                    uid = os.fstat(f.fileno()).st_uid
        except OSError as e:
            fail(f"cannot read {path}: {e.strerror}")
        try:
            owners[sources[-1][0]] = pwd.getpwuid(uid).pw_name
        except KeyError:
            pass
    try:
        text = importer.convert(sources, system=system, owners=owners)
        for path, source in sources:
            jf = jobsfile.parse(source, path, system=system)
            users = _user_words(jf, system)
            search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin:/usr/bin:/sbin:/bin"])
            if users and not any(shutil.which(user, path=search) for user in users):
                # /etc/crontab read as a user crontab: jobs named `root` running `root cd / ...`.
                fail(f"{path} looks like a system crontab: every command starts with a user "
                     f"name ({', '.join(sorted(users))}); import it with --system")
            _hint_system(path, jf, system)
        click.echo(text, nl=False)
    except jobsfile.JobsfileErrors as e:
        for error in e.errors:
            click.echo(str(error), err=True)
        sys.exit(EXIT_INVALID)
