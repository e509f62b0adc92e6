"""`cronsup logs`: one job's or every job's runs, a run with its output, and --follow."""

from __future__ import annotations

import sys

import click

from cronsup.cli import (EXIT_USAGE, _colour, _pipe_safe, _start_hint, _suggest, common_options,
                         fail, state_dir)


def _check_job(job: str, jobs_path: str, runlog) -> None:
    """Exit 2 with close names unless the run log or the jobs file knows `job`."""
    from cronsup import report

    if report.has_job(runlog, job):
        return
    names = report.known_jobs(jobs_path, runlog)
    if job not in names:
        fail(f"no job named {job!r}{_suggest(job, names)}", EXIT_USAGE)


@click.command()
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
