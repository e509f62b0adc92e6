"""What `status` shows: the daemon and every job, from the run log and the jobs file.

Works with the daemon stopped: then jobs and next runs come from the jobs file itself.
"""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import os
from dataclasses import dataclass

from cronsup import jobsfile, paths, schedule
from cronsup.model import Cron, JobSpec
from cronsup.runlog import JobRow, Run, RunLog, RunLogError, RunLogMissing, iso


def daemon_pid(db_path: str) -> int | None:
    """The pid of the daemon holding this run log's lock, or None when none runs."""
    lock = paths.daemon_lock(db_path)
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno not in (errno.EWOULDBLOCK, errno.EACCES):
            return None
        text = os.read(fd, 32).decode(errors="replace").strip()
        return int(text) if text.isdigit() else -1
    else:
        return None  # we got the lock: nobody holds it
    finally:
        os.close(fd)


@dataclass
class JobStatus:
    name: str
    schedule: str
    command: str
    description: str
    enabled: bool
    paused: bool
    next_run: float | None
    last_run: Run | None
    running: list[Run]
    success_rate: float | None
    median_s: float | None

    def to_json(self) -> dict:
        return {
            "name": self.name, "schedule": self.schedule, "command": self.command,
            "description": self.description, "enabled": self.enabled, "paused": self.paused,
            "next_run": iso(self.next_run),
            "last_run": self.last_run.to_json() if self.last_run else None,
            "running": [r.to_json() for r in self.running],
            "success_rate": None if self.success_rate is None else round(self.success_rate, 3),
            "median_duration_s": None if self.median_s is None else round(self.median_s, 3),
        }


@dataclass
class Status:
    running: bool
    pid: int | None
    started_at: float | None
    jobs_file: str
    config_error: str | None
    db_path: str
    jobs: list[JobStatus]
    note: str | None = None  # e.g. "no run log yet"

    def to_json(self) -> dict:
        return {
            "daemon": {"running": self.running, "pid": self.pid, "started_at": iso(self.started_at),
                       "jobs_file": self.jobs_file, "config_error": self.config_error,
                       "db": self.db_path},
            "jobs": [j.to_json() for j in self.jobs],
        }


def _open(db_path: str) -> RunLog | None:
    try:
        return RunLog.open(db_path, readonly=True)
    except RunLogMissing:
        return None


def status(jobs_path: str, db_path: str, now: float) -> Status:
    """Everything `cronsup status` shows. Raises RunLogError for an unreadable run log."""
    pid = daemon_pid(db_path)
    runlog = _open(db_path)
    state = runlog.daemon() if runlog else None
    running = pid is not None
    config_error = state.config_error if running and state else None
    jobs_file = state.jobs_file if running and state else os.path.abspath(jobs_path)
    rows: list[JobRow] = runlog.jobs() if (running and runlog) else []
    if not running:
        rows, config_error = _rows_from_file(jobs_path, now, runlog)
    result = Status(running=running, pid=pid if running else None,
                    started_at=state.started_at if running and state else None,
                    jobs_file=jobs_file, config_error=config_error, db_path=db_path, jobs=[],
                    note=None if runlog else f"no run log at {db_path} yet: the daemon has not run")
    if runlog is None:
        result.jobs = [_job(row, None, [], False, (None, None)) for row in rows]
        return result
    with runlog:
        last = runlog.last_runs()
        active: dict[str, list[Run]] = {}
        for run in runlog.running():
            active.setdefault(run.job, []).append(run)
        paused = runlog.paused()
        for row in rows:
            result.jobs.append(_job(row, last.get(row.name), active.get(row.name, []),
                                    row.name in paused, runlog.stats(row.name)))
    return result


def _job(row: JobRow, last: Run | None, running: list[Run], paused: bool,
         stats: tuple[float | None, float | None]) -> JobStatus:
    return JobStatus(name=row.name, schedule=row.schedule, command=row.command,
                     description=row.description, enabled=row.enabled, paused=paused,
                     next_run=row.next_run, last_run=last, running=running,
                     success_rate=stats[0], median_s=stats[1])


def _rows_from_file(jobs_path: str, now: float, runlog: RunLog | None) -> tuple[list[JobRow], str | None]:
    """Jobs and their next runs from the file, for a stopped daemon; else the last known."""
    try:
        jf = jobsfile.load(jobs_path)
    except jobsfile.JobsfileErrors as e:
        return (runlog.jobs() if runlog else []), str(e.first)
    except OSError as e:
        return (runlog.jobs() if runlog else []), f"{jobs_path}: cannot read: {e.strerror}"
    return [JobRow(name=j.name, schedule=j.schedule.text, command=j.command, description=j.description,
                   next_run=next_run(j, now), enabled=j.enabled, line=j.line) for j in jf.jobs], None


def next_run(job: JobSpec, now: float) -> float | None:
    if not isinstance(job.schedule, Cron):
        return None
    zone = schedule.load_zone(job.timezone)
    t = schedule.next_fire(job.schedule, dt.datetime.fromtimestamp(now, zone), zone)
    return t.timestamp() if t else None


def known_jobs(jobs_path: str, runlog: RunLog | None) -> list[str]:
    """Job names from the jobs file and the run log, for "did you mean" hints."""
    names: list[str] = []
    try:
        names += jobsfile.load(jobs_path).names
    except (jobsfile.JobsfileErrors, OSError):
        pass
    if runlog is not None:
        try:
            names += [n for n in runlog.job_names() if n not in names]
        except RunLogError:
            pass
    return names
