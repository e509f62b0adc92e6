"""`run`, `reload`, `pause` and `resume`: requests to the running daemon."""

from __future__ import annotations

import json
import sys

import click

from cronsup.cli import EXIT_INVALID, EXIT_USAGE, _ask, common_options, fail, state_dir


@click.command()
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


@click.command()
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


@click.command()
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


@click.command()
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
