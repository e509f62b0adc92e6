"""`cronsup run --wait`: follow a run, and the retries it gets, to its end."""

from __future__ import annotations

from collections.abc import Callable

from cronsup import clock, fmt, paths, report
from cronsup.model import RunStatus, Trigger
from cronsup.store import Run, RunReader, open_store

POLL = 0.1

EXIT_OK, EXIT_FAILED, EXIT_NO_DAEMON = 0, 1, 3


def wait_for(db: str, job: str, run_id: int | None, echo: Callable[[str], None],
             after_id: int = 0, state_dir: str | None = None) -> int:
    """0 when the run (or its last retry) succeeds, 1 otherwise; 3 if the daemon goes away.

    `run_id` None: the run is queued behind a running one (overlap = "queue"); it is then the
    job's first manual run with an id above `after_id`.
    """
    with open_store(db, readonly=True) as runlog:
        if run_id is None:
            run_id = _next_manual(runlog, job, (db, state_dir), after_id)
            if run_id is None:
                echo(f"{job}: the daemon stopped before the queued run started")
                return EXIT_NO_DAEMON
            echo(f"{job}: started run {run_id}")
        while True:
            run = _ended(runlog, run_id, (db, state_dir))
            if run is None:
                echo(f"{job}: the daemon stopped before run {run_id} ended; "
                     f"see `cronsup logs {job} --run {run_id}`")
                return EXIT_NO_DAEMON
            echo(f"{job}: run {run.id} {describe(run)}")
            if run.status is RunStatus.SUCCESS:
                return EXIT_OK
            retry = _retry_of(runlog, run, (db, state_dir))
            if retry is None:
                echo(f"{job}: its details and output: `cronsup logs {job} --run {run.id}`")
                return EXIT_FAILED
            echo(f"{job}: started run {retry.id} (retry, attempt {retry.attempt})")
            run_id = retry.id


def describe(run: Run) -> str:
    """'success after 1.0s', 'failed after 2.0s: exit code 3; attempt 2 of 3 in 30s'."""
    text = str(run.status)
    if run.duration_s is not None:
        text += f" after {fmt.took(run.duration_s)}"
    if run.reason:
        return f"{text}: {run.reason}"
    code = fmt.exit_text(run.exit_code, run.signal)
    if code and run.status is not RunStatus.SUCCESS:
        text += f" ({code if run.signal else 'exit code ' + code})"
    return text


def _daemon_alive(db: tuple[str, str | None]) -> bool:
    """Whether a daemon holds the lock of (run log, --state-dir)."""
    if paths.is_url(db[0]):
        return True  # several hosts: the run may be another's; leases end a dead host's runs
    return report.daemon_pid(*db) is not None


def _ended(runlog: RunReader, run_id: int, db: tuple[str, str | None]) -> Run | None:
    for _ in clock.poll(POLL):
        run = runlog.run(run_id)
        if run is not None and run.status is not RunStatus.RUNNING:
            return run
        if not _daemon_alive(db):
            # It may have ended just before the daemon stopped: look once more.
            run = runlog.run(run_id)
            return run if run is not None and run.status is not RunStatus.RUNNING else None
    raise AssertionError("unreachable: a poll without a deadline goes on")


def _retry_of(runlog: RunReader, run: Run, db: tuple[str, str | None]) -> Run | None:
    """The retry the daemon announced in the run's reason ("attempt 2 of 3 in 30s"), once it starts."""
    if not run.reason or f"(attempt {run.attempt + 1} of" not in run.reason:
        return None
    for _ in clock.poll(POLL):
        for later in runlog.runs(run.job, after_id=run.id, limit=1000):
            if later.trigger is Trigger.RETRY and later.attempt == run.attempt + 1 \
                    and later.scheduled_for == run.scheduled_for:
                return later
        if not _daemon_alive(db):
            return None
    raise AssertionError("unreachable: a poll without a deadline goes on")


def _next_manual(runlog: RunReader, job: str, db: tuple[str, str | None], after_id: int) -> int | None:
    for _ in clock.poll(POLL):
        for run in runlog.runs(job, after_id=after_id, limit=1000):
            if run.trigger is Trigger.MANUAL:
                return run.id
        if not _daemon_alive(db):
            return None
    raise AssertionError("unreachable: a poll without a deadline goes on")
