"""`cronsup run --wait`: follow a run, and the retries it gets, to its end."""

from __future__ import annotations

import time
from collections.abc import Callable

from cronsup import report
from cronsup.model import RunStatus, Trigger
from cronsup.runlog import Run, RunLog

POLL = 0.1


def wait_for(db: str, job: str, run_id: int | None, echo: Callable[[str], None]) -> int:
    """0 when the run (or its last retry) succeeds, 1 otherwise; 3 if the daemon goes away."""
    runlog = RunLog.open(db, readonly=True)
    with runlog:
        if run_id is None:  # queued: it is the next manual run of the job
            run_id = _next_manual(runlog, job, db, echo)
            if run_id is None:
                return 3
        while True:
            run = _ended(runlog, run_id, db)
            if run is None:
                echo(f"{job}: the daemon stopped before run {run_id} ended")
                return 3
            took = f" after {run.duration_s:.1f}s" if run.duration_s is not None else ""
            echo(f"{job}: run {run.id} {run.status}{took}" + (f" ({run.reason})" if run.reason else ""))
            if run.status is RunStatus.SUCCESS:
                return 0
            retry = _retry_of(runlog, run, db)
            if retry is None:
                return 1
            run_id = retry.id


def _daemon_alive(db: str) -> bool:
    return report.daemon_pid(db) is not None


def _ended(runlog: RunLog, run_id: int, db: str) -> Run | None:
    while True:
        run = runlog.run(run_id)
        if run is not None and run.status is not RunStatus.RUNNING:
            return run
        if not _daemon_alive(db):
            return None
        time.sleep(POLL)


def _retry_of(runlog: RunLog, run: Run, db: str) -> Run | None:
    """The retry the daemon announced in the run's reason, once it starts."""
    if not run.reason or f"attempt {run.attempt + 1} of" not in run.reason:
        return None
    while _daemon_alive(db):
        for later in runlog.runs(run.job, after_id=run.id, limit=1000):
            if later.trigger is Trigger.RETRY and later.attempt == run.attempt + 1 \
                    and later.scheduled_for == run.scheduled_for:
                return later
        time.sleep(POLL)
    return None


def _next_manual(runlog: RunLog, job: str, db: str, echo: Callable[[str], None]) -> int | None:
    newest = runlog.runs(job, limit=1)
    after = newest[0].id if newest else 0
    while _daemon_alive(db):
        for run in runlog.runs(job, after_id=after, limit=1000):
            if run.trigger is Trigger.MANUAL:
                echo(f"{job}: started run {run.id}")
                return run.id
        time.sleep(POLL)
    return None
