"""`cronsup status`: the daemon, every job's last and next run, as a table or JSON."""

from __future__ import annotations

import sys

import click

from cronsup.cli import (EXIT_INVALID, EXIT_NOT_ANSWERING, EXIT_NO_DAEMON, PING_TIMEOUT,
                         _colour, _pipe_safe, _start_hint, common_options, fail, state_dir)

STATUS_TIMEOUT = 10.0  # for the daemon's thread to build the status, once its loop has answered


@click.command()
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
    asked, answered = _ask_daemon(db)  # first: it builds the status while we import the rest
    from cronsup import clock, fmt

    now = clock.wall()
    st = None
    if asked is not None:
        st, answered = _daemons_status(asked)
    if st is None:  # no daemon here to ask, or it could not say: read the run log ourselves
        from cronsup import report
        from cronsup.store import RunLogError

        try:
            st = report.status(jobs_path, db, now, state_dir=state_dir())
        except RunLogError as e:
            fail(str(e))
        if st.running:  # alive is not enough: a stopped (SIGSTOP) or hung daemon runs nothing
            st.answering = answered if answered is not None else _answers_ping(db)
    if as_json:
        click.echo(fmt.dump_json(st.to_json()))
    else:
        colour = _colour()
        for line in _status_lines(st, now, colour, jobs_path, db):
            click.echo(line, color=colour)
    sys.exit(_status_code(st))


def _ask_daemon(db: str):
    """Ask the daemon running on a PostgreSQL run log for the status (statusserve): the
    request sent, or None and whether its loop answered (None: it could not be asked).

    A SQLite run log is read here as fast as the daemon would read it, so there the work
    stays out of the daemon."""
    from cronsup import paths

    if not paths.is_url(db):
        return None, None
    from cronsup import control, statusserve

    try:
        return control.ask(paths.control_socket(db, state_dir()), "status", timeout=PING_TIMEOUT,
                           fields=statusserve.request_fields(db)), None
    except control.ControlError as e:
        return None, e.answered


def _daemons_status(asked):
    """The daemon's status, and whether its loop answered; no status when it gave none (an
    older daemon has no "status"; one of another version may have other fields)."""
    from cronsup import control, report, statusserve, wire

    try:
        answer = asked.answer(STATUS_TIMEOUT)
    except control.ControlError as e:
        if e.kind == "store":  # the daemon could not read the run log either (down): say so
            fail(str(e))
        return None, e.answered
    if answer.get("wire") != statusserve.wire_signature():
        return None, True
    try:
        return wire.decode(report.Status, answer.get("status")), True
    except wire.WireError:
        return None, True


def _answers_ping(db: str) -> bool | None:
    """Whether the daemon answers a ping (None: we may not ask it, as another user)."""
    from cronsup import control, paths

    try:
        control.request(paths.control_socket(db, state_dir()), "ping", timeout=PING_TIMEOUT)
        return True
    except control.ControlError as e:  # a refusal is an answer: the loop runs
        return None if e.kind == "permission" else e.answered is True


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
