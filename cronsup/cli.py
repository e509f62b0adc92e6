"""The `cronsup` command line: a thin layer over the library, with human-facing output."""

from __future__ import annotations

import os
import sys

import click

from cronsup import __version__, paths, suggest
from cronsup.model import JobsFile


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


class _LazyGroup(click.Group):
    """A group whose commands are imported on first use, from COMMANDS."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *COMMANDS})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.commands and name in COMMANDS:
            import importlib

            module, attr = COMMANDS[name].split(":")
            self.add_command(getattr(importlib.import_module(f"cronsup.{module}"), attr), name)
        return self.commands.get(name)

    def resolve_command(self, ctx: click.Context, args: list[str]):
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as e:
            hint = suggest.did_you_mean(args[0], self.list_commands(ctx), quote=True) if args else ""
            if hint and "No such command" in e.message:
                e.message = e.message.rstrip(".") + hint.replace(";", ":", 1).rstrip("?") + "?"
            raise


@click.group(cls=_LazyGroup,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
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


# Each command lives in a module of its own, imported when it runs (or when --help lists it):
# `cronsup status` does not import the web view, takeover or the daemon's options.
COMMANDS = {
    "check": "cli_jobs:check", "next": "cli_jobs:next_", "import": "cli_jobs:import_",
    "daemon": "cli_daemon:daemon", "status": "cli_status:status", "logs": "cli_logs:logs",
    "run": "cli_control:run", "reload": "cli_control:reload", "pause": "cli_control:pause",
    "resume": "cli_control:resume", "takeover": "cli_takeover:takeover_",
    "release": "cli_takeover:release_", "backfill": "cli_backfill:backfill",
    "metrics": "cli_metrics:metrics", "nodes": "cli_nodes:nodes",
    "notify-test": "cli_notify:notify_test", "web": "cli_web:web",
}


def command(name: str) -> click.Command:
    """The command `name` (imported now if it was not yet)."""
    found = main.get_command(click.Context(main), name)
    if found is None:
        raise KeyError(name)
    return found
