"""The `cronsup` command line: a thin layer over the library, with human-facing output."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import logging
import os
import sys

import click

from cronsup import __version__, paths, suggest
from cronsup.model import AfterJobs, Cron, Every, JobsFile, Reboot


def _lazy(name: str):
    """The module `name`, imported on first use: `status` with a running daemon, `logs`, `run`
    and the rest never pay for the jobs-file parser (a third of a command's start-up)."""
    import importlib.util

    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    setattr(sys.modules[name.rpartition(".")[0]], name.rpartition(".")[2], module)
    return module


importer, jobsfile, schedule = (_lazy(f"cronsup.{m}") for m in ("importer", "jobsfile", "schedule"))

EXIT_INVALID = 1
EXIT_USAGE = 2
EXIT_NO_DAEMON = 3
EXIT_NOT_ANSWERING = 4  # `status`: the daemon holds its lock but does not answer
PING_TIMEOUT = 2.0


def fail(message: str, code: int = EXIT_INVALID) -> None:
    click.echo(f"cronsup: {message}", err=True)
    sys.exit(code)


def _keep_state_dir(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    ctx.meta["cronsup.state_dir"] = value


def state_dir() -> str | None:
    """This command's --state-dir, None for the run log's own directory."""
    ctx = click.get_current_context(silent=True)
    return ctx.meta.get("cronsup.state_dir") if ctx is not None else None


def _keep_node(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value:  # the PostgreSQL store reads it (default: the host name)
        os.environ["CRONSUP_NODE"] = value


def common_options(func):
    """--jobs, --db, --state-dir and --node, which every command takes (and CRONSUP_JOBS /
    CRONSUP_DB / CRONSUP_STATE_DIR / CRONSUP_NODE)."""
    func = click.option(
        "--node", envvar="CRONSUP_NODE", metavar="NAME", expose_value=False, callback=_keep_node,
        show_default="the host name",
        help="With a postgresql:// --db: this daemon's name in the cluster (two daemons on one "
             "machine need two names, and two --state-dir).",
    )(func)
    func = click.option(
        "--state-dir", envvar="CRONSUP_STATE_DIR", metavar="DIR", expose_value=False,
        callback=_keep_state_dir, show_default="the run log's directory",
        help="The daemon's lock and control socket; a daemon and the commands given the same "
             "--db and --state-dir find each other.",
    )(func)
    func = click.option(
        "--db", "db", envvar="CRONSUP_DB", metavar="PATH", default=paths.default_db,
        show_default="root: /var/lib/cronsup/runs.db, others: ~/.local/state/cronsup/runs.db",
        help="The run log: a SQLite file, or postgresql://... shared by several hosts; a "
             "daemon and the commands given the same --db find each other.",
    )(func)
    func = click.option(
        "--jobs", "jobs_path", envvar="CRONSUP_JOBS", metavar="FILE", default=paths.default_jobs,
        show_default="root: /etc/cronsup/jobs, others: ~/.config/cronsup/jobs",
        help="The jobs file.",
    )(func)
    return func


def cron_options(func):
    """--cron and --cron-root, for `daemon` and `check`."""
    func = click.option(
        "--cron-root", metavar="DIR", type=click.Path(file_okay=False),
        help="With --cron: read cron's files under DIR instead of / (DIR/etc/crontab ...), for "
             "tests and chroots.")(func)
    func = click.option(
        "--cron", is_flag=True,
        help="Also cron's own files, as Debian's cron reads them: /etc/crontab, /etc/cron.d/* "
             "and /var/spool/cron/crontabs/USER; their options come from the jobs file's [cron] "
             "block.")(func)
    return func


def _cron_root(cron: bool, cron_root: str | None) -> str | None:
    """The root cron's files are read under (None: no --cron)."""
    if cron_root and not cron:
        fail("--cron-root needs --cron", EXIT_USAGE)
    return os.path.abspath(cron_root or "/") if cron else None


def load_jobs(path: str, system: bool = False) -> JobsFile:
    """The jobs file, or exit 1 with every error as FILE:LINE: message."""
    try:
        return jobsfile.load(path, system=system)
    except jobsfile.JobsfileErrors as e:
        for error in e.errors:
            click.echo(str(error), err=True)
        sys.exit(EXIT_INVALID)
    except jobsfile.JobsfileRefused as e:
        fail(str(e))
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


@main.command("import")
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


def _size_option(ctx: click.Context, param: click.Parameter, value: str) -> int:
    from cronsup.units import parse_size

    try:
        size = parse_size(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    if size < 1024 * 1024:
        raise click.BadParameter(f"{value!r} is less than 1MiB, too little to keep a run's output")
    return size


@main.command()
@click.option("--system", is_flag=True, help="Read the jobs file in the system format (a user field per line).")
@click.option("--detach", is_flag=True, help="Run in the background (for systems without systemd).")
@click.option("--pidfile", metavar="PATH", help="With --detach: write the daemon's pid here.")
@click.option("--log-file", metavar="PATH", help="Log here instead of standard error (with --detach: syslog).")
@click.option("--keep-runs", default=1000, show_default=True, type=click.IntRange(1), help="Runs kept per job in the run log.")
@click.option("--keep-days", default=90.0, show_default=True, type=click.FloatRange(min=0.01), help="Days of history kept in the run log.")
@click.option("--sendmail", metavar="PATH", envvar="CRONSUP_SENDMAIL", help="The program that mails output (env CRONSUP_SENDMAIL; default: /usr/sbin/sendmail, /usr/lib/sendmail, then PATH).")
@click.option("--keep-size", default="256MiB", show_default=True, metavar="SIZE", callback=_size_option,
              help="Captured output kept in the run log (e.g. 64MiB, 2GiB): above it the oldest finished "
                   "runs lose their output, never their row.")
@click.option("--metrics", "metrics", metavar="ADDR:PORT", callback=lambda c, p, v: _listen_option(v),
              help="Serve /metrics (Prometheus) and /health here; PORT alone listens on 127.0.0.1.")
@click.option("-v", "--verbose", is_flag=True, help="Log debugging detail.")
@cron_options
@common_options
def daemon(system: bool, detach: bool, pidfile: str | None, log_file: str | None, keep_runs: int,
           keep_days: float, keep_size: int, sendmail: str | None, metrics: tuple[str, int] | None,
           verbose: bool, jobs_path: str, db: str, cron: bool, cron_root: str | None) -> None:
    """Run the daemon: start jobs on time, supervise them, record every run.

    Runs in the foreground until SIGTERM or SIGINT (running jobs get SIGTERM and their
    kill_grace, then SIGKILL); SIGHUP rereads the jobs file, as does saving it.

    \b
    Example:
      cronsup daemon --jobs /etc/cronsup/jobs --db /var/lib/cronsup/runs.db
      cronsup daemon --detach --pidfile /run/cronsup.pid
      cronsup daemon --cron      # also /etc/crontab, /etc/cron.d/*, users' crontabs
    """
    from cronsup.daemon import Daemon, DaemonError

    cron_root = _cron_root(cron, cron_root)
    if cron_root is not None and os.geteuid() != 0:
        fail("--cron needs root: cron's files name the users their jobs run as", EXIT_USAGE)
    if pidfile and not detach:
        fail("--pidfile needs --detach (under systemd, leave both out)", EXIT_USAGE)
    if sendmail:
        sendmail = os.path.abspath(sendmail)  # the daemon runs in / once detached
    d = Daemon(jobs_path, db, system=system, keep_runs=keep_runs, keep_days=keep_days,
               keep_size=keep_size, sendmail=sendmail, state_dir=state_dir(), metrics=metrics,
               cron_root=cron_root)
    if detach:
        from cronsup import detach as detaching

        log_file = log_file and os.path.abspath(log_file)  # the daemon runs in /
        try:
            detaching.detach(d, pidfile)
        except detaching.DetachError as e:
            fail(str(e))
        _setup_logging(verbose, log_file, syslog=not log_file)
    else:
        _setup_logging(verbose, log_file)
    try:
        sys.exit(d.run())
    except DaemonError as e:
        fail(str(e))


def _listen_option(value: str | None) -> tuple[str, int] | None:
    from cronsup.metrics_server import ListenError, parse_listen

    try:
        return None if value is None else parse_listen(value)
    except ListenError as e:
        raise click.BadParameter(str(e).removeprefix(f"--metrics {value!r}: ")) from None


def _setup_logging(verbose: bool, log_file: str | None, syslog: bool = False) -> None:
    level = logging.DEBUG if verbose else logging.INFO
    if log_file:
        import errno
        from logging.handlers import WatchedFileHandler

        class NoFollow(WatchedFileHandler):
            # The daemon, maybe root, creates this file: never through a symlink planted there.
            def _open(self):
                fd = os.open(self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
                             | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
                return os.fdopen(fd, self.mode, encoding=self.encoding, errors=self.errors)

        try:  # Watched: logrotate may move the file away; the next line reopens the path
            handler: logging.Handler = NoFollow(os.path.abspath(log_file))
        except OSError as e:
            if e.errno == errno.ELOOP:
                fail(f"the log file {log_file} is a symbolic link; cronsup does not follow it")
            fail(f"cannot open the log file {log_file}: {e.strerror}")
        handler.setFormatter(logging.Formatter("%(asctime)s cronsup[%(process)d]: %(levelname)s %(message)s"))
    elif syslog:
        from logging.handlers import SysLogHandler

        if os.path.exists("/dev/log"):
            handler = SysLogHandler("/dev/log", facility=SysLogHandler.LOG_CRON)  # cron's facility
            handler.setFormatter(logging.Formatter("cronsup[%(process)d]: %(message)s"))
        else:  # said on stderr, which a detached daemon's launcher shows on its terminal
            click.echo("cronsup: warning: no syslog socket (/dev/log): the daemon logs nothing; "
                       "give it --log-file", err=True)
            handler = logging.NullHandler()
    else:
        handler = logging.StreamHandler(sys.stderr)
        if _stderr_is_journal():
            # The journal stamps each line, and reads a "<N>" prefix as its syslog priority
            # (so `journalctl -p warning -u cronsup` works).
            priority = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3}
            handler.addFilter(lambda r: setattr(r, "priority", priority.get(r.levelno, 2)) or True)
            fmt = "<%(priority)d>%(levelname)s %(message)s"
        else:
            fmt = "%(asctime)s %(levelname)s %(message)s"
        handler.setFormatter(logging.Formatter(fmt))
    root = logging.getLogger("cronsup")
    root.handlers[:] = [handler]
    root.setLevel(level)


def _stderr_is_journal() -> bool:
    """stderr is systemd's journal stream, as $JOURNAL_STREAM ("DEV:INODE") says it is."""
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return os.environ.get("JOURNAL_STREAM", "") == f"{st.st_dev}:{st.st_ino}"


def _colour() -> bool:
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def _pipe_safe(func):
    """`cronsup logs JOB | head`: a reader that goes away ends the command quietly."""
    import functools

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except BrokenPipeError:
            # Python would complain again when it flushes stdout at exit.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            sys.exit(0)
    return wrapper


def _start_hint(jobs_path: str, db: str) -> str:
    """The command that starts a daemon these commands would find."""
    words = ["cronsup daemon"]
    if os.path.abspath(jobs_path) != os.path.abspath(paths.default_jobs()):
        words.append(f"--jobs {jobs_path}")
    if paths.is_url(db) and os.environ.get("CRONSUP_NODE"):
        words.append(f"--node {os.environ['CRONSUP_NODE']}")
    if os.path.abspath(db) != os.path.abspath(paths.default_db()):
        words.append(f"--db {paths.shown(db)}")
    if state_dir():
        words.append(f"--state-dir {state_dir()}")
    return f"`{' '.join(words)}`" + (" (or `systemctl start cronsup`)" if len(words) == 1 else "")


def _suggest(name: str, names: list[str]) -> str:
    """'; did you mean backup?' or '; its jobs are: a, b, c' for an unknown job name."""
    hint = suggest.did_you_mean(name, names, n=5)
    if hint:
        return hint
    if names:
        more = f" and {len(names) - 10} more" if len(names) > 10 else ""
        return f"; its jobs are {', '.join(names[:10])}{more}"
    return ""


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON, for scripts.")
@common_options
@_pipe_safe
def status(as_json: bool, jobs_path: str, db: str) -> None:
    """The daemon and every job: schedule, next run, last run, running now.

    For each job: its next run (time and how soon), its last run (how long ago, its result
    with the exit code or signal, how long it took), its description, runs going on now (pid,
    how long), and over its last 20 runs the share that succeeded in the end, retries
    included (OK), and their median duration. Works while the daemon is stopped, from the run
    log and the jobs file.

    Exit status, for scripts (`cronsup status >/dev/null || alert`): 0 the daemon runs and
    the jobs file is good; 1 the jobs file has errors (also when no daemon runs: the file
    needs fixing either way); 3 no daemon runs (as `systemctl status` uses 3); 4 the daemon
    runs but does not answer within 2 s (stopped with SIGSTOP, or hung).

    \b
    Example:
      cronsup status
      cronsup status --json | jq '.jobs[] | select(.last_run.status != "success")'
    """
    from cronsup import clock, fmt, report
    from cronsup.store import RunLogError

    now = clock.wall()
    try:
        st = report.status(jobs_path, db, now, state_dir=state_dir())
    except RunLogError as e:
        fail(str(e))
    if st.running:  # alive is not enough: a stopped (SIGSTOP) or hung daemon runs nothing
        st.answering = _answers_ping(db)
    if as_json:
        click.echo(fmt.dump_json(st.to_json()))
    else:
        colour = _colour()
        for line in _status_lines(st, now, colour, jobs_path, db):
            click.echo(line, color=colour)
    sys.exit(_status_code(st))


def _answers_ping(db: str) -> bool:
    from cronsup import control, paths

    try:
        control.request(paths.control_socket(db, state_dir()), "ping", timeout=PING_TIMEOUT)
        return True
    except control.ControlError:
        return False


def _status_code(st) -> int:
    """0 running with a good file, 1 the file has errors (checked first), 3 no daemon,
    4 a daemon that does not answer."""
    if st.config_error:
        return EXIT_INVALID
    if not st.running:
        return EXIT_NO_DAEMON
    return EXIT_NOT_ANSWERING if st.answering is False else 0


def _status_lines(st, now: float, colour: bool, jobs_path: str, db: str) -> list[str]:
    from cronsup import fmt

    def style(text: str, **kw) -> str:
        return click.style(text, **kw) if colour else text

    lines = []
    if st.running:
        up = fmt.format_duration(now - st.started_at, coarse=True) if st.started_at else "?"
        since = f" (since {fmt.stamp(st.started_at, now)})" if st.started_at else ""
        lines.append(f"daemon     running, pid {st.pid}, up {up}{since}")
        if st.answering is False:
            lines.append(style(f"           but not answering its control socket within {PING_TIMEOUT:g}s: "
                               "stopped (SIGSTOP) or hung; nothing starts while it is", fg="red", bold=True))
    else:
        if st.stopped_at:
            how = f"stopped {fmt.stamp(st.stopped_at, now)} ({fmt.relative(st.stopped_at, now)})"
        elif st.ever_ran:
            seen = f"; last seen {fmt.stamp(st.last_seen, now)}" if st.last_seen else ""
            how = f"it ended without stopping cleanly{seen}"
        else:
            how = "it has not run with this run log yet"
        lines.append(f"daemon     {style('not running', fg='yellow', bold=True)}: {how}")
        lines.append(f"           start it with {_start_hint(jobs_path, db)}")
    count = len(st.jobs)
    if st.cron is not None:  # daemon --cron: the file's own jobs, and cron's beside them
        count = sum(1 for j in st.jobs if not j.source or j.source.startswith(f"{st.jobs_file}:"))
        more = len(st.jobs) - count
        lines.append(f"jobs file  {st.jobs_file} ({count} job{'' if count == 1 else 's'}), and "
                     f"{more} job{'' if more == 1 else 's'} from cron's files")
    else:
        lines.append(f"jobs file  {st.jobs_file} ({count} job{'' if count == 1 else 's'})")
    lines.append(f"run log    {st.db_path}" + ("" if st.has_log else " (none yet)"))
    if st.cron is not None:
        from cronsup import cli_cron

        lines += cli_cron.status_lines(st.cron, style)
    if st.running and st.internal_errors:
        lines.append(style(f"errors     {st.internal_errors} internal error{'' if st.internal_errors == 1 else 's'} "
                           "caught by the daemon, which went on (see its log)", fg="red"))
    version = st.version if st.running else None
    if version is not None and version.origin == "run log":
        lines.append(f"running    the last good version, loaded from the file {fmt.stamp(version.loaded_at, now)} "
                     f"and kept in the run log ({version.jobs} job{'' if version.jobs == 1 else 's'}): "
                     "the file had errors when the daemon started")
    elif version is not None and version.origin == "none":
        lines.append("running    no jobs: the file had errors when the daemon started and the run log "
                     "holds no good version of it")
    elif version is not None and st.config_error:
        lines.append(f"running    the last good version, loaded from the file {fmt.stamp(version.loaded_at, now)}")
    if st.config_error:
        label = "JOBS FILE ERROR"
        if st.running:
            label += " (no jobs run)" if version is not None and version.origin == "none" \
                else " (running the last good version)"
        lines.append(style(f"{label}: {st.config_error}", fg="red", bold=True))
        lines.append(f"`cronsup check {st.jobs_file}` lists every error")
    lines.append("")
    if not st.jobs:
        lines.append("no jobs")
        return lines
    rows: list[list[str] | str] = []
    for job in st.jobs:
        rows.append(_status_row(job, now, colour, style))
        if job.description:
            rows.append(style(fmt.cut(f"  {job.description}", fmt.width() or 100), dim=True))
        if st.cron is not None and job.source and not job.source.startswith(f"{st.jobs_file}:"):
            who = f", as {job.user}" if job.user else ""
            rows.append(style(f"  from {job.source}{who}", dim=True))
        for attempt in job.alerts_failing:
            then = "given up" if attempt.next_try is None else f"next try {fmt.stamp(attempt.next_try, now)}"
            rows.append(style(f"  ↳ alerts failing: {attempt.channel} {attempt.shown}: {attempt.answer} "
                              f"({fmt.relative(attempt.at, now)}; {then})", fg="red"))
        for run in job.running:
            since = f"for {fmt.format_duration(now - run.started_at, coarse=True)}" if run.started_at \
                else "not started yet"
            if st.running:
                # No pid yet: being started, or waiting for a free file descriptor.
                pid = f"pid {run.pid}" if run.pid else "no process yet"
                rows.append(f"  ↳ running now: run {run.id}, {pid}, {since}")
            else:
                rows.append(f"  ↳ run {run.id} is still marked running, but the daemon is not: "
                            "the next daemon marks it lost")
    columns = [fmt.Column("JOB", wrap=True, shrink=True, least=10),
               fmt.Column("SCHEDULE", shrink=True, least=9), fmt.Column("NEXT"),
               fmt.Column("LAST"), fmt.Column("RESULT"), fmt.Column("TOOK", right=True, gap=1),
               fmt.Column("OK", right=True), fmt.Column("MEDIAN", right=True)]
    lines += fmt.table(columns, rows, fmt.width())
    return lines


def _status_row(job, now: float, colour: bool, style) -> list[str]:
    from cronsup import fmt
    from cronsup.model import RunStatus

    if job.paused:
        nxt = style("paused", fg="yellow")
    elif not job.enabled:
        nxt = style("disabled", fg="yellow")
    elif job.retry_at is not None:
        at = fmt.local(job.retry_at)
        clock = at.strftime("%H:%M:%S") if at.date() == fmt.local(now).date() else fmt.when(job.retry_at, now)
        nxt = style(f"retry {job.retry_attempt} of {job.retry_attempts} at {clock}", fg="yellow")
    elif job.next_run is None:
        nxt = "never" if _never_fires(job.schedule) else "-"
    else:
        nxt = f"{fmt.when(job.next_run, now)} {fmt.relative(job.next_run, now)}"
    last = job.last_finished
    if last is None:
        last_cols = ["never" if not job.running else "-", "", ""]
    else:
        result = fmt.status(last.status, colour)
        code = fmt.exit_text(last.exit_code, last.signal)
        if last.signal and last.status is RunStatus.KILLED:  # a timeout's signal is our own
            result += f" ({code.removeprefix('SIG')})"
        elif code and not last.signal and code != "0":
            result += f" ({code})"
        at = last.started_at or last.scheduled_for
        last_cols = [fmt.relative(at, now), result, fmt.took(last.duration_s)]
    rate = "" if job.success_rate is None else f"{job.success_rate * 100:.0f}%"
    median = "" if job.median_s is None else fmt.took(job.median_s)
    return [job.name, job.schedule, nxt, *last_cols, rate, median]


def _never_fires(text: str) -> bool:
    """A cron schedule no date matches (`0 0 30 2 *`): kept in a file as a way to switch it off."""
    from cronsup import schedule
    from cronsup.model import Cron

    try:
        parsed = schedule.parse_schedule(text)
    except schedule.ScheduleError:
        return False
    return isinstance(parsed, Cron) and schedule.never_fires(parsed) is not None


def _check_job(job: str, jobs_path: str, runlog) -> None:
    """Exit 2 with close names unless the run log or the jobs file knows `job`."""
    from cronsup import report

    if report.has_job(runlog, job):
        return
    names = report.known_jobs(jobs_path, runlog)
    if job not in names:
        fail(f"no job named {job!r}{_suggest(job, names)}", EXIT_USAGE)


@main.command()
@click.argument("job", required=False)
@click.option("-n", "limit", default=20, show_default="20; 10 with --follow; all with --since", type=click.IntRange(1), help="How many runs.")
@click.option("--failed", is_flag=True, help="Only runs that did not succeed (failed, timeout, killed, lost, missed, error).")
@click.option("--since", metavar="DURATION", help="Only runs of the last DURATION, such as 2d or 6h.")
@click.option("--output", "with_output", is_flag=True, help="Add each run's captured output.")
@click.option("--run", "run_id", type=int, metavar="ID", help="One run in full, with its output.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing runs as they start and end (Ctrl-C stops).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of runs (one object per line with --follow).")
@common_options
@click.pass_context
@_pipe_safe
def logs(ctx: click.Context, job: str, limit: int, failed: bool, since: str | None, with_output: bool,
         run_id: int | None, follow: bool, as_json: bool, jobs_path: str, db: str) -> None:
    """A job's runs, newest first: trigger, attempt, start, duration, status, exit code.

    Without JOB, the runs of every job, with a JOB column: `cronsup logs --failed --since 12h`
    answers "what failed last night". A failed attempt whose retry then succeeded says so in
    its reason ("retried: attempt 2 succeeded"; "retried_ok" in JSON).

    On a terminal, control characters in the captured output are shown escaped (\\x1b), so
    a job's output cannot move the cursor or pass for lines of cronsup's own.

    \b
    Example:
      cronsup logs backup
      cronsup logs --failed --since 12h
      cronsup logs backup --failed --since 7d --output
      cronsup logs backup --run 42          (or: cronsup logs --run 42)
      cronsup logs backup --follow --output
    """
    from cronsup import clock, fmt, logview, report
    from cronsup.store import RunLogError
    from cronsup.units import parse_duration

    if run_id is not None and follow:
        fail("--run shows one run; it cannot be combined with --follow", EXIT_USAGE)
    after = None
    if since:
        try:
            after = clock.wall() - parse_duration(since)
        except ValueError as e:
            fail(f"--since: {e}", EXIT_USAGE)
    try:
        runlog = report.open_log(db)
    except RunLogError as e:
        fail(str(e))
    if ctx.get_parameter_source("limit") is click.core.ParameterSource.DEFAULT:
        if follow:
            limit = 10
        elif since:
            limit = None  # "what failed last night": the whole window, not its last 20
    if job is None and run_id is not None:
        found = runlog.run(run_id) if runlog is not None else None
        if found is None:
            fail(f"no run {run_id} in the run log {db}", EXIT_USAGE)
        job = found.job
    try:
        if job is not None:
            _check_job(job, jobs_path, runlog)
        if runlog is None:  # a job of the jobs file, and no daemon has run with this --db yet
            if run_id is not None:
                fail(f"no run {run_id}: there is no run log at {db} yet", EXIT_USAGE)
            if not follow:
                click.echo("[]" if as_json else f"no runs of {job or 'any job'} yet: no daemon has run with "
                           f"the run log {db} (start one with {_start_hint(jobs_path, db)})")
                return
            runlog = _await_log(db)
        view = logview.LogView(runlog, job, escape=sys.stdout.isatty(), colour=_colour(),
                               now=clock.wall, width=fmt.width())
        if run_id is not None:
            view.one(run_id, as_json)
        elif follow:
            if report.daemon_pid(db, state_dir()) is None:
                click.echo(f"cronsup: no daemon is running with the run log {db}: new runs appear "
                           f"once one starts ({_start_hint(jobs_path, db)})", err=True)
            view.follow(limit, failed, after, with_output, as_json)
        else:
            view.list(limit, failed, after, with_output, as_json)
    except logview.NoSuchRun as e:
        fail(str(e), EXIT_USAGE)
    except RunLogError as e:
        fail(str(e))
    finally:
        if runlog is not None:
            runlog.close()


def _await_log(db: str):
    """`logs --follow` before the daemon's first start: wait for it to create the run log."""
    from cronsup import clock, report

    click.echo(f"no run log at {db} yet; waiting for the daemon to start (Ctrl-C stops)", err=True)
    try:
        for _ in clock.poll(0.5):
            if (runlog := report.open_log(db)) is not None:
                return runlog
    except KeyboardInterrupt:
        sys.exit(0)
    raise AssertionError("unreachable: a poll without a deadline goes on")


def _ask(jobs_path: str, db: str, op: str, job: str | None = None, fields: dict | None = None) -> dict:
    """One request to the daemon over its control socket; exit 3 when none runs."""
    from cronsup import control, report

    path = paths.control_socket(db, state_dir())
    try:
        return control.request(path, op, job, fields=fields)
    except control.NoDaemon:
        if op == "run" and paths.is_url(db):  # no daemon here: ask the cluster through the store
            from cronsup.cli_nodes import request_run

            return request_run(db, job)
        pid = report.daemon_pid(db, state_dir())
        if pid is not None:
            fail(f"the daemon (pid {pid}) holds the run log {paths.shown(db)} but does not answer on {path}; "
                 "it may still be starting: try again in a moment", EXIT_NO_DAEMON)
        fail(f"no daemon is running with the run log {paths.shown(db)}; start one with "
             f"{_start_hint(jobs_path, db)}", EXIT_NO_DAEMON)
    except control.ControlError as e:
        fail(str(e), EXIT_USAGE if e.kind == "unknown_job" else EXIT_INVALID)
    raise AssertionError("unreachable")


@main.command()
@click.argument("job")
@click.option("--wait", is_flag=True, help="Wait for the run (and its retries) to end; exit 0 on success, 1 otherwise.")
@click.option("--env", "env", multiple=True, metavar="KEY=VALUE",
              help="A parameter for this run, in its environment and recorded with it (repeatable).")
@common_options
def run(job: str, wait: bool, env: tuple[str, ...], jobs_path: str, db: str) -> None:
    """Have the daemon start JOB now (trigger "manual"), under its overlap policy and retries.

    Prints the run id. Without --wait it returns at once; `cronsup logs JOB --run ID` shows
    the run later. Exits 3 when no daemon is running. --env KEY=VALUE passes parameters to
    this run only (not PATH, HOME, SHELL, LOGNAME, USER, MAILTO nor CRONSUP_*).

    \b
    Example:
      cronsup run backup
      cronsup run backup --wait && echo "backup ok"
      cronsup run report --env DAY=2026-11-30 --wait
    """
    from cronsup import params, waiting

    try:
        pairs = params.parse(env)
    except params.ParamError as e:
        fail(f"--env {e}", EXIT_USAGE)
    size = len(json.dumps({"op": "run", "job": job, "env": dict(pairs)})) + 1
    if size > params.MAX_REQUEST:
        fail(f"--env: the parameters make a request of {size:,} bytes; the control socket takes "
             f"at most {params.MAX_REQUEST:,}", EXIT_USAGE)
    answer = _ask(jobs_path, db, "run", job, {"env": dict(pairs)} if pairs else None)
    run_id, state = answer.get("run_id"), answer.get("status")
    if state == "queued":
        click.echo(f"{job}: queued, {answer.get('reason')}")
    elif state == "running":
        pid = f" (pid {answer['pid']})" if answer.get("pid") else ""
        click.echo(f"{job}: started run {run_id}{pid}")
    else:  # skipped (overlap) or error (could not start): nothing to wait for
        why = f": {answer['reason']}" if answer.get("reason") else ""
        click.echo(f"{job}: run {run_id} {'could not start' if state == 'error' else state}{why}")
        sys.exit(EXIT_INVALID)
    if wait:
        sys.exit(waiting.wait_for(db, job, run_id, echo=click.echo, after_id=answer.get("after_id") or 0,
                                  state_dir=state_dir()))


@main.command()
@common_options
def reload(jobs_path: str, db: str) -> None:
    """Have the daemon reread its jobs file now (saving the file does it too).

    Exits 1 when the file has errors: the daemon then keeps the last good version.

    \b
    Example:
      cronsup reload
    """
    answer = _ask(jobs_path, db, "reload")
    path = answer.get("jobs_file") or jobs_path
    if answer.get("reloaded"):
        count = answer.get("jobs")
        click.echo(f"reloaded: {count} job{'' if count == 1 else 's'} from {path}")
    else:
        going_on = "no jobs (no version of the file has loaded without errors yet)" \
            if answer.get("running_from") == "none" else "the last good version"
        fail(f"not reloaded: {answer.get('config_error')}\n"
             f"cronsup: the daemon goes on running {going_on}; "
             f"`cronsup check {path}` lists every error")


def _next_text(answer: dict) -> str:
    from cronsup import clock, fmt

    nxt = answer.get("next_run")
    if nxt is None:
        return ""
    now = clock.wall()
    return f"; next run {fmt.when(nxt, now)} ({fmt.relative(nxt, now)})"


@main.command()
@click.argument("job")
@common_options
def pause(job: str, jobs_path: str, db: str) -> None:
    """Stop scheduled starts of JOB until `cronsup resume JOB` (kept across daemon restarts).

    A running run goes on; `cronsup run JOB` still starts it by hand.

    \b
    Example:
      cronsup pause backup
    """
    from cronsup import clock, fmt

    answer = _ask(jobs_path, db, "pause", job)
    if answer.get("changed", True):
        click.echo(f"{job}: paused until `cronsup resume {job}`, also across daemon restarts")
    else:
        since = answer.get("paused_since")
        when = f" since {fmt.stamp(since, clock.wall())}" if since else ""
        click.echo(f"{job}: already paused{when}")


@main.command()
@click.argument("job")
@common_options
def resume(job: str, jobs_path: str, db: str) -> None:
    """Start scheduling JOB again after `cronsup pause JOB`.

    \b
    Example:
      cronsup resume backup
    """
    answer = _ask(jobs_path, db, "resume", job)
    if answer.get("changed", True):
        click.echo(f"{job}: resumed{_next_text(answer)}")
    else:
        click.echo(f"{job}: was not paused{_next_text(answer)}")



# Commands in modules of their own, registered last (they import main's helpers).
from cronsup.cli_backfill import backfill as _backfill  # noqa: E402
from cronsup.cli_metrics import metrics as _metrics  # noqa: E402
from cronsup.cli_nodes import nodes as _nodes  # noqa: E402
from cronsup.cli_notify import notify_test as _notify_test  # noqa: E402
from cronsup.cli_takeover import release_, takeover_  # noqa: E402
from cronsup.cli_web import web as _web  # noqa: E402

for _command in (takeover_, release_, _backfill, _metrics, _nodes, _notify_test, _web):
    main.add_command(_command)
