"""What `status` shows: the daemon and every job, from the run log and the jobs file.

Works with the daemon stopped (then jobs and next runs come from the jobs file itself) and
before any run log exists. Only reads: nothing here writes the run log or talks to the daemon
(a running daemon builds it with this module too, and answers it: statusserve).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from cronsup import lockfile, paths
from cronsup.model import RunStatus
from cronsup.runjson import iso, run_json
from cronsup.store import DeliveryAttempt, JobRow, Run, RunLogError, RunLogMissing, RunningVersion, RunReader, open_store

STATS_RUNS = 20  # success rate and median duration are over a job's last this many runs
CRON_KV = "cron_sources"  # the run log's kv key: cron's files as `daemon --cron` read them (JSON)


def daemon_pid(db_path: str, state_dir: str | None = None) -> int | None:
    """The pid of the daemon holding this run log's lock, or None when none runs."""
    return lockfile.holder(paths.daemon_lock(db_path, state_dir))


@dataclass
class JobStatus:
    name: str
    schedule: str
    command: str
    description: str
    enabled: bool
    paused: bool
    next_run: float | None
    last_run: Run | None  # the newest run, finished or not
    running: list[Run]
    success_rate: float | None
    median_s: float | None
    last_finished: Run | None = None  # the newest run that is not running
    retry_at: float | None = None  # a retry waiting to start
    retry_attempt: int | None = None
    retry_attempts: int | None = None
    line: int = 0  # the schedule line in its file
    source: str | None = None  # FILE:LINE the job comes from (the jobs file, or one of cron's)
    user: str | None = None  # a job of cron's files: whom it runs as
    # Alert channels whose latest attempt failed (the target shown as scheme and host only).
    alerts_failing: list[DeliveryAttempt] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "name": self.name, "schedule": self.schedule, "command": self.command,
            "source": self.source,
            "description": self.description, "enabled": self.enabled, "paused": self.paused,
            "next_run": iso(self.next_run),
            "retry_at": iso(self.retry_at), "retry_attempt": self.retry_attempt,
            "last_run": run_json(self.last_run) if self.last_run else None,
            "running": [run_json(r) for r in self.running],
            "success_rate": None if self.success_rate is None else round(self.success_rate, 3),
            "median_duration_s": None if self.median_s is None else round(self.median_s, 3),
            "stats_over_runs": STATS_RUNS,
            "alerts_failing": [{"channel": a.channel, "target": a.shown, "at": iso(a.at),
                                "answer": a.answer, "next_try": iso(a.next_try)}
                               for a in self.alerts_failing],
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
    has_log: bool = True  # False: no run log yet, the daemon never ran with this --db
    stopped_at: float | None = None  # a stopped daemon's clean exit
    last_seen: float | None = None  # a stopped daemon's last heartbeat (it may have crashed)
    ever_ran: bool = False  # a daemon has written its state into this run log
    version: RunningVersion | None = None  # what the running daemon runs (None: not known)
    internal_errors: int = 0  # exceptions the running daemon's loop caught and went on after
    answering: bool | None = None  # a running daemon answered a ping (None: not asked)
    cron: dict | None = None  # `daemon --cron`: its root, sources and job origins (cronlive)

    def to_json(self) -> dict:
        version = None if self.version is None else {
            "loaded_at": iso(self.version.loaded_at), "jobs": self.version.jobs,
            "from": self.version.origin}
        return {
            "daemon": {"running": self.running, "pid": self.pid, "started_at": iso(self.started_at),
                       "jobs_file": self.jobs_file, "config_error": self.config_error,
                       "db": self.db_path, "run_log_exists": self.has_log,
                       "stopped_at": None if self.running else iso(self.stopped_at),
                       "last_seen": None if self.running else iso(self.last_seen),
                       "running_version": version, "internal_errors": self.internal_errors,
                       "answering": self.answering if self.running else None},
            "jobs": [j.to_json() for j in self.jobs],
            "cron": None if self.cron is None else {
                "root": self.cron.get("root"), "systemd": self.cron.get("systemd"),
                "sources": self.cron.get("sources", [])},
        }


def _shown(db_path: str) -> str:
    if paths.is_url(db_path):
        from cronsup.store.postgres.schema import display

        return display(db_path)
    return os.path.abspath(db_path)


def open_log(db_path: str) -> RunReader | None:
    """The run log read-only, or None when none exists yet."""
    _check_access(db_path)
    try:
        return open_store(db_path, readonly=True)
    except RunLogMissing:
        return None


def _check_access(db_path: str) -> None:
    """A run log we may not read is an error that says so, not a missing one."""
    if paths.is_url(db_path):
        return
    try:
        os.stat(db_path)
    except FileNotFoundError:
        return
    except PermissionError:
        raise RunLogError(f"permission denied: cannot reach the run log {db_path}; it belongs to "
                          "the daemon's user: run this as that user or root") from None
    except OSError:
        return  # open_store reports it
    if not os.access(db_path, os.R_OK):
        raise RunLogError(f"permission denied: cannot read the run log {db_path}; run this as "
                          "the daemon's user or root")


def status(jobs_path: str, db_path: str, now: float, *, state_dir: str | None = None,
           reader: RunReader | None = None) -> Status:
    """Everything `cronsup status` shows. Raises RunLogError for an unreadable run log.

    `reader`: a reader of the run log already open (the daemon's, statusserve), kept open."""
    runlog = reader if reader is not None else open_log(db_path)
    pid = daemon_pid(db_path, state_dir)
    running = pid is not None
    try:
        state = runlog.daemon() if runlog else None
        if running and state is not None:
            # The daemon's own view: the jobs it runs (the last good version of the file).
            rows, config_error, jobs_file = runlog.jobs(), state.config_error, state.jobs_file
        else:
            rows, config_error = _rows_from_file(jobs_path, now, runlog)
            jobs_file = os.path.abspath(jobs_path)
        result = Status(running=running, pid=pid, jobs_file=jobs_file, config_error=config_error,
                        db_path=_shown(db_path), jobs=[], has_log=runlog is not None,
                        started_at=state.started_at if running and state else None,
                        stopped_at=state.stopped_at if state and not running else None,
                        last_seen=state.last_seen if state and not running else None,
                        ever_ran=state is not None,
                        version=runlog.running_version() if running and state else None,
                        internal_errors=_internal_errors(runlog) if running and state else 0,
                        cron=_cron(runlog) if running and state else None)
        if runlog is None:
            result.jobs = [_job(row, None, [], False, (None, None)) for row in rows]
            _sources(result)
            return result
        active: dict[str, list[Run]] = {}
        for run in runlog.running():
            active.setdefault(run.job, []).append(run)
        names = [row.name for row in rows]
        # The shown jobs' own (not every name the log ever held): one index seek each.
        last = runlog.last_runs([*names, *sorted(set(active) - set(names))])
        paused = runlog.paused()
        stats = runlog.stats_many(names, STATS_RUNS)
        # LAST is the latest run that ran to an end: a run still going, and the skipped or
        # missed fires around it, say nothing about how the job went.
        unfinished = [n for n in names if n in last and last[n].status in _NOT_AN_END]
        finished = runlog.last_finished(unfinished, _NOT_AN_END, within=50) if unfinished else {}
        for row in rows:
            job = _job(row, last.get(row.name), active.get(row.name, []), row.name in paused,
                       stats[row.name])
            if row.name in unfinished:
                job.last_finished = finished.get(row.name)
            result.jobs.append(job)
        failing = _failing_channels(runlog)
        for job in result.jobs:
            job.alerts_failing = failing.get(job.name, [])
        # A run still going for a job a reload removed: its processes live on until it
        # ends, so it is listed, not hidden.
        for name in sorted(set(active) - set(names)):
            gone = JobRow(name=name, schedule="-", command="", enabled=False, line=0, next_run=None,
                          description="removed from the jobs file; this run goes on until it ends")
            result.jobs.append(_job(gone, last.get(name), active[name], False, (None, None)))
        _sources(result)
        return result
    finally:
        if runlog is not None and reader is None:
            runlog.close()


def _cron(runlog: RunReader) -> dict | None:
    import json

    try:
        value = runlog.get_kv(CRON_KV)
        return json.loads(value) if value else None
    except ValueError:
        return None


def _sources(result: Status) -> None:
    """Each job's FILE:LINE: one of cron's files (daemon --cron), else the jobs file."""
    origins = (result.cron or {}).get("origins", {})
    users = (result.cron or {}).get("users", {})
    for job in result.jobs:
        job.source = origins.get(job.name) or (
            f"{result.jobs_file}:{job.line}" if job.line else None)
        job.user = users.get(job.name)
def _failing_channels(runlog: RunReader) -> dict[str, list[DeliveryAttempt]]:
    try:
        return runlog.failing_channels()
    except RunLogError:  # a run log from before the outbox
        return {}


def _internal_errors(runlog: RunReader) -> int:
    try:
        return int(runlog.get_kv("internal_errors") or 0)
    except ValueError:
        return 0


def _job(row: JobRow, last: Run | None, running: list[Run], paused: bool,
         stats: tuple[float | None, float | None]) -> JobStatus:
    return JobStatus(name=row.name, schedule=row.schedule, command=row.command,
                     description=row.description, enabled=row.enabled, paused=paused,
                     next_run=row.next_run, last_run=last, running=running,
                     success_rate=stats[0], median_s=stats[1], last_finished=last,
                     retry_at=row.retry_at, retry_attempt=row.retry_attempt,
                     retry_attempts=row.retry_attempts, line=row.line)


_NOT_AN_END = (RunStatus.RUNNING, RunStatus.SKIPPED, RunStatus.MISSED)


def _rows_from_file(jobs_path: str, now: float, runlog: RunReader | None) -> tuple[list[JobRow], str | None]:
    """Jobs and their next runs from the file, for a stopped daemon; else the last known."""
    from cronsup import jobsfile

    try:
        jf = jobsfile.load(jobs_path)
    except jobsfile.JobsfileErrors as e:
        error = e.summary
        return (runlog.jobs() if runlog else []), error
    except jobsfile.JobsfileRefused as e:
        return (runlog.jobs() if runlog else []), str(e)
    except OSError as e:
        return (runlog.jobs() if runlog else []), f"{jobs_path}: cannot read: {e.strerror}"
    fires: dict[tuple, float | None] = {}  # jobs sharing a schedule and zone share its next run
    for j in jf.jobs:
        if (j.schedule, j.timezone) not in fires:
            fires[j.schedule, j.timezone] = next_run(j, now)
    return [JobRow(name=j.name, schedule=j.schedule.text, command=j.command, description=j.description,
                   next_run=fires[j.schedule, j.timezone], enabled=j.enabled, line=j.line)
            for j in jf.jobs], None


def next_run(job, now: float) -> float | None:
    """A cron job's next fire time after `now`; None for @every (counted from the daemon's
    start), @after and @reboot, which have no time of their own."""
    import datetime as dt

    from cronsup import schedule
    from cronsup.model import Cron

    if not isinstance(job.schedule, Cron):
        return None
    zone = schedule.load_zone(job.timezone)
    t = schedule.next_fire(job.schedule, dt.datetime.fromtimestamp(now, zone), zone)
    return t.timestamp() if t else None


def has_job(runlog: RunReader | None, name: str) -> bool:
    """Whether the run log knows the job: it has runs, or the daemon lists it (cheap lookups)."""
    if runlog is None:
        return False
    return bool(runlog.runs(name, limit=1)) or any(row.name == name for row in runlog.jobs())


def known_jobs(jobs_path: str, runlog: RunReader | None) -> list[str]:
    """Job names from the jobs file and the run log, for "did you mean" hints."""
    from cronsup import jobsfile

    names: list[str] = []
    try:
        names += jobsfile.load(jobs_path).names
    except (jobsfile.JobsfileErrors, jobsfile.JobsfileRefused, OSError):
        pass
    if runlog is not None:
        try:
            names += [n for n in runlog.job_names() if n not in names]
        except RunLogError:
            pass
    return names
