"""`cronsup daemon`: its options, and the logging it sets up before the loop starts."""

from __future__ import annotations

import logging
import os
import sys

import click

from cronsup.cli import EXIT_USAGE, _cron_root, common_options, cron_options, fail, state_dir


def _size_option(ctx: click.Context, param: click.Parameter, value: str) -> int:
    from cronsup.units import parse_size

    try:
        size = parse_size(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    if size < 1024 * 1024:
        raise click.BadParameter(f"{value!r} is less than 1MiB, too little to keep a run's output")
    return size


@click.command()
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
