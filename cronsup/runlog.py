"""The run log: one SQLite file holding runs, their output, the daemon's state and its jobs.

The daemon is the only writer; the CLI (`status`, `logs`) opens the same file read-only, also
while the daemon is stopped. WAL mode lets those readers see committed writes without ever
blocking the daemon. Like huey's SqliteStorage, the connection is set up once (WAL, busy
timeout) and every write goes through one transaction helper, `_transaction()`.

This module makes no policy decisions and reads no clock: callers pass times as float epoch
seconds. It never deletes history to recover from an error; a corrupt file is renamed aside,
not removed.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sqlite3
import urllib.parse
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from cronsup import clock
from cronsup.model import RunStatus, Trigger

log = logging.getLogger(__name__)

# Statuses `logs --failed` shows: every run that did not succeed and was not merely skipped
# by the overlap policy (a `skipped` run is the policy working as configured), nor running.
FAILED_STATUSES: tuple[RunStatus, ...] = (
    RunStatus.FAILED,
    RunStatus.TIMEOUT,
    RunStatus.KILLED,
    RunStatus.LOST,
    RunStatus.MISSED,
    RunStatus.ERROR,
)

# Statuses of runs whose process ran and whose end is known: what `stats` counts. `lost`
# (end unknown), `skipped`, `missed` and `error` (never started) say nothing about how long
# the job takes or how often it succeeds.
RAN_STATUSES: tuple[RunStatus, ...] = (
    RunStatus.SUCCESS,
    RunStatus.FAILED,
    RunStatus.TIMEOUT,
    RunStatus.KILLED,
)

# sqlite3 primary result codes (the low byte of an extended code).
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
_SQLITE_CORRUPT = 11
_SQLITE_FULL = 13
_SQLITE_CANTOPEN = 14
_SQLITE_NOTADB = 26

# Cap the -wal file at this size after a checkpoint, so one big prune does not leave a
# file of hundreds of megabytes behind for good.
_JOURNAL_SIZE_LIMIT = 32 * 1024 * 1024

# outputs.truncated: 0 whole, 1 cut to its first and last halves by output_limit, 2 removed
# (data empty) to keep the run log's output under the daemon's --keep-size.
_OUTPUT_PRUNED = 2

# Pruning by age counts from the earlier of `now` and the newest run's time plus this: a
# wall clock that jumped ahead (100 days, for a minute) must not make all history look old.
PRUNE_CLOCK_MARGIN = 3600.0


# -- errors -------------------------------------------------------------------------------------


class RunLogError(Exception):
    """Anything that went wrong with the run log, as one line a person can act on."""

    def __init__(self, message: str, *, full: bool = False, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.full = full  # SQLITE_FULL: the disk (or the database's page limit) is full
        self.code = code  # the SQLite error name, e.g. "SQLITE_BUSY", when there is one


class RunLogMissing(RunLogError):
    """A read-only open found no run log (or one no daemon has initialised yet)."""


def _primary_code(exc: BaseException) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF


def _is_corruption(exc: BaseException) -> bool:
    return _primary_code(exc) in (_SQLITE_CORRUPT, _SQLITE_NOTADB)


def _wrap(path: str, exc: sqlite3.Error) -> RunLogError:
    code = _primary_code(exc)
    detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if code in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
        message = f"run log {path} is corrupt or not a cronsup run log: {detail}"
    elif code in (_SQLITE_BUSY, _SQLITE_LOCKED):
        message = f"run log {path} is locked by another process: {detail}"
    else:
        message = f"run log {path}: {detail}"
    return RunLogError(
        message, full=code == _SQLITE_FULL, code=getattr(exc, "sqlite_errorname", None)
    )


def _guarded(method):
    """Turn sqlite3 errors escaping a public method into RunLogError."""

    @functools.wraps(method)
    def wrapper(self: RunLog, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            raise _wrap(self.path, exc) from exc

    return wrapper


# -- records ------------------------------------------------------------------------------------


def iso(t: float | None) -> str | None:
    """Epoch seconds as ISO 8601 with the local offset: 1764032400.0 -> '2025-11-25T02:00:00+01:00'.

    (That example in Europe/Berlin.)
    """
    if t is None:
        return None
    # From UTC rather than a naive local time, so an instant in a repeated DST hour gets
    # the offset it really had.
    return datetime.fromtimestamp(t, tz=timezone.utc).astimezone().isoformat(timespec="seconds")


@dataclass(frozen=True, slots=True)
class Run:
    """One row of the run log."""

    id: int
    job: str
    trigger: Trigger
    attempt: int
    scheduled_for: float
    started_at: float | None
    finished_at: float | None
    status: RunStatus
    exit_code: int | None
    signal: int | None
    pid: int | None
    pid_start: float | None  # the process's create time, to tell a reused pid apart
    host: str
    boot_id: str
    reason: str | None
    cpu_s: float | None
    max_rss: int | None  # bytes
    output_truncated: bool | None  # None: no output was saved
    output_pruned: bool = False  # removed to keep the run log under --keep-size

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    def to_json(self, output: bytes | None = None, truncated: bool | None = None) -> dict:
        """The RUN object of SPEC section 2; with `output`, also "output" and "output_truncated"
        (and "output_pruned": true when --keep-size removed the output)."""
        duration = self.duration_s
        data: dict[str, Any] = {
            "id": self.id,
            "job": self.job,
            "trigger": str(self.trigger),
            "attempt": self.attempt,
            "scheduled_for": iso(self.scheduled_for),
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "duration_s": None if duration is None else round(duration, 3),
            "status": str(self.status),
            "exit_code": self.exit_code,
            "signal": self.signal,
            "pid": self.pid,
            "host": self.host,
            "reason": self.reason,
            "cpu_s": None if self.cpu_s is None else round(self.cpu_s, 3),
            "max_rss": self.max_rss,
        }
        if output is not None:
            data["output"] = output.decode("utf-8", errors="replace")
            if truncated is None:
                truncated = bool(self.output_truncated)
            data["output_truncated"] = truncated
            if self.output_pruned:
                data["output_pruned"] = True
        return data


@dataclass(frozen=True, slots=True)
class NewRun:
    """A run to record before its process starts (or a skipped/missed one that never will)."""

    job: str
    trigger: Trigger
    attempt: int
    scheduled_for: float
    status: RunStatus = RunStatus.RUNNING
    reason: str | None = None
    started_at: float | None = None
    finished_at: float | None = None


@dataclass(frozen=True, slots=True)
class DaemonState:
    """The one row describing the daemon that writes (or last wrote) this run log."""

    pid: int
    pid_start: float | None
    started_at: float
    stopped_at: float | None = None
    host: str = ""
    boot_id: str = ""
    jobs_file: str = ""
    config_error: str | None = None  # the last reload's error, shown by `status`
    last_seen: float | None = None  # the daemon's heartbeat


@dataclass(frozen=True, slots=True)
class GoodJobs:
    """The last jobs file the daemon loaded without errors, as the bytes it parsed: a restart
    that finds the file broken runs this instead of nothing."""

    path: str
    system: bool
    loaded_at: float
    source: bytes


@dataclass(frozen=True, slots=True)
class RunningVersion:
    """Which version of the jobs file the daemon runs. `origin`: "file" (loaded from the file
    at `loaded_at`), "run log" (the file was bad at start-up: the GoodJobs stored here,
    loaded from the file at `loaded_at`), "none" (bad at start-up and nothing stored)."""

    origin: str
    loaded_at: float | None
    jobs: int


@dataclass(frozen=True, slots=True)
class JobRow:
    """One of the daemon's current jobs, as `status` shows it."""

    name: str
    schedule: str
    command: str
    description: str
    next_run: float | None
    enabled: bool
    line: int
    retry_at: float | None = None  # a retry waiting to start, and which attempt it is
    retry_attempt: int | None = None
    retry_attempts: int | None = None  # retries + 1


# -- schema -------------------------------------------------------------------------------------

# Each step takes the schema from version i to i + 1 (user_version counts the steps applied).
# Never edit a released step: append a new one. Statements run one by one inside the open
# transaction (executescript would commit it).
MIGRATIONS: list[tuple[str, ...]] = [
    (
        """CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            job TEXT NOT NULL,
            trigger TEXT NOT NULL,
            attempt INTEGER NOT NULL,
            scheduled_for REAL NOT NULL,
            started_at REAL,
            finished_at REAL,
            status TEXT NOT NULL,
            exit_code INTEGER,
            signal INTEGER,
            pid INTEGER,
            pid_start REAL,
            host TEXT NOT NULL,
            boot_id TEXT NOT NULL,
            reason TEXT,
            cpu_s REAL,
            max_rss INTEGER,
            UNIQUE (job, scheduled_for, attempt)
        )""",
        # `logs JOB` newest first, the latest run of each job, `--follow`.
        "CREATE INDEX runs_job_id ON runs (job, id)",
        # Running runs: a handful among a million, so a partial index.
        "CREATE INDEX runs_running ON runs (job, id) WHERE status = 'running'",
        # `logs JOB --failed`, and the last success of a job for `@after`.
        "CREATE INDEX runs_job_status_id ON runs (job, status, id)",
        # `truncated` before `data`: reading the flag never walks a large blob's overflow pages.
        """CREATE TABLE outputs (
            run_id INTEGER PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
            truncated INTEGER NOT NULL,
            data BLOB NOT NULL
        )""",
        """CREATE TABLE daemon (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            pid INTEGER NOT NULL,
            pid_start REAL,
            started_at REAL NOT NULL,
            stopped_at REAL,
            host TEXT NOT NULL,
            boot_id TEXT NOT NULL,
            jobs_file TEXT NOT NULL,
            config_error TEXT,
            last_seen REAL
        )""",
        """CREATE TABLE jobs (
            position INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            schedule TEXT NOT NULL,
            command TEXT NOT NULL,
            description TEXT NOT NULL,
            next_run REAL,
            enabled INTEGER NOT NULL,
            line INTEGER NOT NULL
        )""",
        "CREATE TABLE paused (job TEXT PRIMARY KEY, since REAL NOT NULL)",
        "CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    ),
    (
        # A pending retry, for `status` (NULL: none).
        "ALTER TABLE jobs ADD COLUMN retry_at REAL",
        "ALTER TABLE jobs ADD COLUMN retry_attempt INTEGER",
        "ALTER TABLE jobs ADD COLUMN retry_attempts INTEGER",
    ),
]
SCHEMA_VERSION = len(MIGRATIONS)

# kv keys
_GOOD_JOBS = "good_jobs"
_RUNNING_VERSION = "running_version"


def _json_kv(value: str | None) -> Any:
    try:
        return json.loads(value) if value is not None else None
    except ValueError:
        return None

_RUN_COLUMNS = (
    "r.id, r.job, r.trigger, r.attempt, r.scheduled_for, r.started_at, r.finished_at, "
    "r.status, r.exit_code, r.signal, r.pid, r.pid_start, r.host, r.boot_id, r.reason, "
    "r.cpu_s, r.max_rss, o.truncated"
)
_RUN_FROM = "runs r LEFT JOIN outputs o ON o.run_id = r.id"
_SELECT_RUNS = f"SELECT {_RUN_COLUMNS} FROM {_RUN_FROM}"

# The distinct job names of `runs`, found by hopping through an index (one seek per job)
# instead of reading a million index entries.
_JOB_NAMES_CTE = """
WITH RECURSIVE names(job) AS (
    SELECT (SELECT job FROM runs ORDER BY job LIMIT 1)
    UNION ALL
    SELECT (SELECT r.job FROM runs r WHERE r.job > names.job ORDER BY r.job LIMIT 1)
    FROM names WHERE names.job IS NOT NULL
)
"""

_DAEMON_FIELDS = (
    "pid", "pid_start", "started_at", "stopped_at", "host", "boot_id", "jobs_file",
    "config_error", "last_seen",
)
_DAEMON_UPDATABLE = frozenset({"config_error", "last_seen", "stopped_at", "jobs_file"})


def _run_from_row(row: Sequence[Any]) -> Run:
    (id_, job, trigger, attempt, scheduled_for, started_at, finished_at, status, exit_code,
     signal, pid, pid_start, host, boot_id, reason, cpu_s, max_rss, truncated) = row
    return Run(
        id=id_, job=job, trigger=Trigger(trigger), attempt=attempt,
        scheduled_for=scheduled_for, started_at=started_at, finished_at=finished_at,
        status=RunStatus(status), exit_code=exit_code, signal=signal, pid=pid,
        pid_start=pid_start, host=host, boot_id=boot_id, reason=reason, cpu_s=cpu_s,
        max_rss=max_rss,
        output_truncated=None if truncated is None else truncated == 1,
        output_pruned=truncated == _OUTPUT_PRUNED,
    )


def _median(values: list[float]) -> float | None:
    """The median, without importing `statistics` (and its decimal/fractions) into the CLI."""
    if not values:
        return None
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def _newer_message(path: str, version: int) -> str:
    return (
        f"run log {path} was written by a newer cronsup (schema {version}; this one knows "
        f"up to {SCHEMA_VERSION})"
    )


def _placeholders(n: int) -> str:
    return ", ".join("?" * n)


# -- the run log --------------------------------------------------------------------------------


class RunLog:
    """A connection to the run log. `RunLog.open(path)` for the daemon, `readonly=True` for the CLI.

    Not for concurrent use from several threads (the daemon uses it from its loop's thread).
    """

    def __init__(self, conn: sqlite3.Connection, path: str, *, readonly: bool, synchronous: str):
        self._conn = conn
        self.path = path
        self.readonly = readonly
        self._synchronous = synchronous

    # -- opening ----------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        readonly: bool = False,
        busy_timeout: float = 5.0,
        synchronous: str = "NORMAL",
        check: bool = True,
        now: float | None = None,
    ) -> RunLog:
        """Open the run log at `path`.

        The writer (the daemon) creates the file (0600) and its directory (0700), migrates
        the schema, and moves a file that is not SQLite or fails `PRAGMA quick_check` (run
        when `check`; it reads the whole file, ~0.3 s for a million runs) aside to
        `<path>.corrupt-<UTC time of now>` (the wall clock if `now` is None) and starts afresh.
        A reader (`readonly=True`, the CLI) never creates, migrates or moves anything and is
        not checked beyond its header: a missing file raises RunLogMissing, damage found by a
        query raises RunLogError.
        """
        path = os.path.abspath(os.fspath(path))
        if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"synchronous must be OFF, NORMAL, FULL or EXTRA, not {synchronous!r}")
        if readonly:
            return cls._open_reader(path, busy_timeout)
        return cls._open_writer(path, busy_timeout, synchronous.upper(), check, now)

    @classmethod
    def _open_reader(cls, path: str, busy_timeout: float) -> RunLog:
        if not os.path.exists(path):
            raise RunLogMissing(f"run log {path} does not exist (no daemon has used this --db yet)")
        try:
            conn = sqlite3.connect(
                _readonly_uri(path), uri=True, timeout=busy_timeout, isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            if not os.path.exists(path):
                raise RunLogMissing(f"run log {path} does not exist") from exc
            raise _wrap(path, exc) from exc
        try:
            (version,) = conn.execute("PRAGMA user_version").fetchone()
            if version == 0:
                # An empty file: a daemon created it and has not written the schema yet.
                raise RunLogMissing(f"run log {path} has not been initialised by a daemon yet")
            if version > SCHEMA_VERSION:
                raise RunLogError(_newer_message(path, version))
            if version < SCHEMA_VERSION:
                raise RunLogError(
                    f"run log {path} has an older schema ({version}); start the daemon to "
                    "upgrade it"
                )
        except sqlite3.Error as exc:
            conn.close()
            raise _wrap(path, exc) from exc
        except RunLogError:
            conn.close()
            raise
        return cls(conn, path, readonly=True, synchronous="NORMAL")

    @classmethod
    def _open_writer(
        cls, path: str, busy_timeout: float, synchronous: str, check: bool, now: float | None
    ) -> RunLog:
        parent = os.path.dirname(path)
        try:
            if not os.path.isdir(parent):
                os.makedirs(parent, mode=0o700, exist_ok=True)
            # Create the file ourselves so it is 0600 from its first instant (SQLite gives
            # its -wal and -shm files the same mode).
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            os.close(fd)
        except OSError as exc:
            raise RunLogError(f"run log {path}: {exc.strerror or exc}") from exc

        try:
            version = _probe(path, busy_timeout, check)
            if version > SCHEMA_VERSION:  # refuse before changing anything in the file
                raise RunLogError(_newer_message(path, version))
            conn = cls._connect_writer(path, busy_timeout, synchronous)
        except _Corrupt as corrupt:
            moved = _move_aside(path, now)
            log.warning(
                "run log %s is corrupt (%s); moved it to %s and started a new run log",
                path, corrupt.detail, moved,
            )
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
                os.close(fd)
                conn = cls._connect_writer(path, busy_timeout, synchronous)
            except OSError as exc:
                raise RunLogError(f"run log {path}: {exc.strerror or exc}") from exc
            except _Corrupt as again:
                raise RunLogError(f"run log {path}: a new run log is corrupt too: {again.detail}")
        runlog = cls(conn, path, readonly=False, synchronous=synchronous)
        try:
            runlog._migrate()
        except BaseException:
            conn.close()
            raise
        return runlog

    @staticmethod
    def _connect_writer(path: str, busy_timeout: float, synchronous: str) -> sqlite3.Connection:
        """Connect and set the connection up once; raise _Corrupt for a damaged file."""
        try:
            conn = sqlite3.connect(
                path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise _wrap(path, exc) from exc
        try:
            (mode,) = conn.execute("PRAGMA journal_mode=WAL").fetchone()
            if str(mode).lower() != "wal":
                log.warning("run log %s: WAL mode unavailable, using %s", path, mode)
            conn.execute(f"PRAGMA synchronous={synchronous}")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute(f"PRAGMA journal_size_limit={_JOURNAL_SIZE_LIMIT}")
        except sqlite3.Error as exc:
            conn.close()
            if _is_corruption(exc):
                raise _Corrupt(str(exc)) from exc
            raise _wrap(path, exc) from exc
        return conn

    @_guarded
    def _migrate(self) -> None:
        (version,) = self._conn.execute("PRAGMA user_version").fetchone()
        if version == SCHEMA_VERSION:
            return
        with self._transaction() as conn:
            # Read again under the write lock: another process may have migrated meanwhile.
            (version,) = conn.execute("PRAGMA user_version").fetchone()
            if version > SCHEMA_VERSION:
                raise RunLogError(_newer_message(self.path, version))
            for step in MIGRATIONS[version:]:
                for statement in step:
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        self._conn.close()

    def set_busy_timeout(self, seconds: float) -> None:
        """How long a write waits for another process's lock before failing with "locked".

        The daemon keeps this short and retries from its loop, which must never sleep in
        SQLite's busy handler while control requests and the watchdog wait.
        """
        self._conn.execute(f"PRAGMA busy_timeout={max(0, int(seconds * 1000))}")

    @_guarded
    def checkpoint(self) -> bool:
        """Copy the -wal file into the database and empty it; True if it was emptied.

        TRUNCATE when no reader holds an old snapshot (it waits the busy timeout for them),
        else PASSIVE: what readers allow is copied, and the file is reused from its start
        later instead of growing.
        """
        if self.readonly:
            return False
        busy, _, _ = self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return not busy

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @_guarded
    def schema_version(self) -> int:
        return self._conn.execute("PRAGMA user_version").fetchone()[0]

    # -- the one transaction helper -----------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any error. Every write goes through here.

        IMMEDIATE takes the write lock up front, so a busy database is waited for (busy
        timeout) at BEGIN instead of failing half-way through.
        """
        if self.readonly:
            raise RunLogError(f"run log {self.path} was opened read-only")
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            # SQLite may already have rolled back by itself (e.g. on SQLITE_FULL).
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            raise

    # -- writes -------------------------------------------------------------------------------

    @_guarded
    def insert_runs(self, runs: list[NewRun], *, host: str, boot_id: str) -> list[int | None]:
        """Record runs before their processes start: their ids, None where the key was taken.

        The key is (job, scheduled_for, attempt).

        One transaction, synced to disk (synchronous=FULL) before returning: once this returns,
        a restarted daemon sees these scheduled times as taken.
        """
        ids: list[int | None] = []
        if not runs:
            return ids
        self._conn.execute("PRAGMA synchronous=FULL")
        try:
            with self._transaction() as conn:
                for new in runs:
                    cur = conn.execute(
                        "INSERT INTO runs (job, trigger, attempt, scheduled_for, started_at, "
                        "finished_at, status, host, boot_id, reason) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                        "ON CONFLICT (job, scheduled_for, attempt) DO NOTHING",
                        (new.job, str(new.trigger), new.attempt, new.scheduled_for,
                         new.started_at, new.finished_at, str(new.status), host, boot_id,
                         new.reason),
                    )
                    ids.append(cur.lastrowid if cur.rowcount == 1 else None)
        finally:
            self._conn.execute(f"PRAGMA synchronous={self._synchronous}")
        return ids

    @_guarded
    def mark_started(
        self, run_id: int, pid: int, pid_start: float | None, started_at: float
    ) -> bool:
        """Record a running run's process; False if the run is not running."""
        return self.mark_started_many([(run_id, pid, pid_start, started_at)]) == 1

    @_guarded
    def mark_started_many(
        self, started: Iterable[tuple[int, int, float | None, float]]
    ) -> int:
        """mark_started for many runs in one transaction; returns how many were updated."""
        count = 0
        with self._transaction() as conn:
            for run_id, pid, pid_start, started_at in started:
                count += conn.execute(
                    "UPDATE runs SET pid = ?, pid_start = ?, started_at = ? "
                    "WHERE id = ? AND status = 'running'",
                    (pid, pid_start, started_at, run_id),
                ).rowcount
        return count

    @_guarded
    def save_output(self, run_id: int, data: bytes, truncated: bool) -> None:
        """Store (replace) a run's captured output."""
        with self._transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO outputs (run_id, truncated, data) VALUES (?, ?, ?)",
                (run_id, int(bool(truncated)), bytes(data)),
            )

    @_guarded
    def finish_run(
        self,
        run_id: int,
        status: RunStatus,
        *,
        finished_at: float,
        exit_code: int | None = None,
        signal: int | None = None,
        reason: str | None = None,
        cpu_s: float | None = None,
        max_rss: int | None = None,
        output: tuple[bytes, bool] | None = None,
    ) -> bool:
        """Complete a running run, with its final output if given, in one transaction;
        False (nothing written) if it is not running any more."""
        status = RunStatus(status)
        if status is RunStatus.RUNNING:
            raise ValueError("finish_run needs a finished status, not 'running'")
        with self._transaction() as conn:
            cur = conn.execute(
                "UPDATE runs SET status = ?, finished_at = ?, exit_code = ?, signal = ?, "
                "reason = ?, cpu_s = ?, max_rss = ? WHERE id = ? AND status = 'running'",
                (str(status), finished_at, exit_code, signal, reason, cpu_s, max_rss, run_id),
            )
            if output is not None and cur.rowcount == 1:
                conn.execute(
                    "INSERT OR REPLACE INTO outputs (run_id, truncated, data) VALUES (?, ?, ?)",
                    (run_id, int(bool(output[1])), bytes(output[0])),
                )
        return cur.rowcount == 1

    @_guarded
    def finish_runs_lost(self, run_ids: Iterable[int], reason: str, finished_at: float) -> int:
        """Mark runs whose end is unknown as `lost`; returns how many were still running."""
        count = 0
        with self._transaction() as conn:
            for run_id in run_ids:
                count += conn.execute(
                    "UPDATE runs SET status = 'lost', reason = ?, finished_at = ? "
                    "WHERE id = ? AND status = 'running'",
                    (reason, finished_at, run_id),
                ).rowcount
        return count

    @_guarded
    def set_daemon(self, state: DaemonState) -> None:
        """Replace the daemon row (at daemon start)."""
        with self._transaction() as conn:
            conn.execute(
                f"INSERT OR REPLACE INTO daemon (id, {', '.join(_DAEMON_FIELDS)}) "
                f"VALUES (1, {_placeholders(len(_DAEMON_FIELDS))})",
                tuple(getattr(state, name) for name in _DAEMON_FIELDS),
            )

    @_guarded
    def update_daemon(self, **fields: Any) -> bool:
        """Update some of config_error, last_seen, stopped_at, jobs_file; False if no daemon row."""
        unknown = set(fields) - _DAEMON_UPDATABLE
        if unknown:
            raise TypeError(f"update_daemon: cannot update {', '.join(sorted(unknown))}")
        if not fields:
            return self.daemon() is not None
        names = sorted(fields)
        with self._transaction() as conn:
            cur = conn.execute(
                f"UPDATE daemon SET {', '.join(f'{n} = ?' for n in names)} WHERE id = 1",
                tuple(fields[n] for n in names),
            )
        return cur.rowcount == 1

    @_guarded
    def set_jobs(self, rows: Sequence[JobRow]) -> None:
        """Replace the daemon's current jobs, kept in the order given."""
        with self._transaction() as conn:
            conn.execute("DELETE FROM jobs")
            conn.executemany(
                "INSERT INTO jobs (position, name, schedule, command, description, next_run, "
                "enabled, line, retry_at, retry_attempt, retry_attempts) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    (i, r.name, r.schedule, r.command, r.description, r.next_run,
                     int(bool(r.enabled)), r.line, r.retry_at, r.retry_attempt, r.retry_attempts)
                    for i, r in enumerate(rows)
                ),
            )

    @_guarded
    def update_next_runs(self, next_runs: dict[str, float | None]) -> None:
        """Set the next run of some of the jobs, leaving the others as they are."""
        with self._transaction() as conn:
            conn.executemany("UPDATE jobs SET next_run = ? WHERE name = ?",
                             [(t, name) for name, t in next_runs.items()])

    @_guarded
    def update_retries(self, retries: dict[str, tuple[float, int, int] | None]) -> None:
        """Set (retry_at, attempt, attempts) or None for some of the jobs."""
        with self._transaction() as conn:
            conn.executemany(
                "UPDATE jobs SET retry_at = ?, retry_attempt = ?, retry_attempts = ? WHERE name = ?",
                [(*(r if r is not None else (None, None, None)), name) for name, r in retries.items()])

    @_guarded
    def set_paused(self, job: str, paused: bool, since: float) -> None:
        """Pause (keeping the first `since` if already paused) or resume a job."""
        with self._transaction() as conn:
            if paused:
                conn.execute(
                    "INSERT INTO paused (job, since) VALUES (?, ?) ON CONFLICT (job) DO NOTHING",
                    (job, since),
                )
            else:
                conn.execute("DELETE FROM paused WHERE job = ?", (job,))

    @_guarded
    def set_kv(self, key: str, value: str | None) -> None:
        """Store a small string (None deletes it)."""
        with self._transaction() as conn:
            if value is None:
                conn.execute("DELETE FROM kv WHERE key = ?", (key,))
            else:
                conn.execute("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", (key, value))

    def set_good_jobs(self, good: GoodJobs) -> None:
        # surrogateescape and JSON's \\udcXX escapes keep any bytes exactly.
        self.set_kv(_GOOD_JOBS, json.dumps({
            "path": good.path, "system": good.system, "loaded_at": good.loaded_at,
            "text": good.source.decode("utf-8", "surrogateescape")}))

    def set_running_version(self, version: RunningVersion) -> None:
        self.set_kv(_RUNNING_VERSION, json.dumps({
            "origin": version.origin, "loaded_at": version.loaded_at, "jobs": version.jobs}))

    @_guarded
    def prune(self, *, max_runs_per_job: int, max_age_s: float, now: float,
              max_output_bytes: int | None = None) -> int:
        """Delete old finished runs and their output; returns how many runs were deleted.

        Per job, keeps the newest `max_runs_per_job` runs (by id) and drops finished runs
        whose scheduled time (and start, if any) is older than `max_age_s` before the
        earlier of `now` and the newest run's time plus PRUNE_CLOCK_MARGIN (a clock that
        jumped ahead does not age the history). Never deletes a running run, nor a job's
        newest run or its latest schedule/catchup run: the latter is what `last_scheduled`
        and catch-up count from after a restart. With `max_output_bytes`, then removes the
        oldest finished runs' output (see prune_output).
        """
        if max_runs_per_job < 1:
            raise ValueError("max_runs_per_job must be at least 1")
        newest = self._newest_time()
        if newest is not None and now > newest + PRUNE_CLOCK_MARGIN:
            now = newest + PRUNE_CLOCK_MARGIN
        deleted = 0
        for job in self.job_names():
            # One short transaction per job keeps the write lock and the -wal file small.
            with self._transaction() as conn:
                deleted += self._prune_job(conn, job, max_runs_per_job, now - max_age_s)
        if max_output_bytes is not None:
            self.prune_output(max_output_bytes)
        return deleted

    @staticmethod
    def _prune_job(conn: sqlite3.Connection, job: str, keep_n: int, cutoff: float) -> int:
        # Outputs go with their runs through ON DELETE CASCADE (foreign_keys is on).
        (newest,) = conn.execute("SELECT MAX(id) FROM runs WHERE job = ?", (job,)).fetchone()
        row = conn.execute(
            "SELECT id FROM runs WHERE job = ? AND trigger IN ('schedule', 'catchup') "
            "ORDER BY scheduled_for DESC LIMIT 1",
            (job,),
        ).fetchone()
        latest_scheduled = row[0] if row else newest
        spared = "status != 'running' AND id NOT IN (?, ?)"
        count = 0
        row = conn.execute(
            "SELECT id FROM runs WHERE job = ? ORDER BY id DESC LIMIT 1 OFFSET ?",
            (job, keep_n - 1),
        ).fetchone()
        if row is not None:  # beyond the newest keep_n
            count += conn.execute(
                f"DELETE FROM runs WHERE job = ? AND id < ? AND {spared}",
                (job, row[0], newest, latest_scheduled),
            ).rowcount
        # Too old: found through the unique index's (job, scheduled_for) prefix.
        count += conn.execute(
            "DELETE FROM runs WHERE job = ? AND scheduled_for < ? "
            f"AND COALESCE(started_at, scheduled_for) < ? AND {spared}",
            (job, cutoff, cutoff, newest, latest_scheduled),
        ).rowcount
        return count

    def _newest_time(self) -> float | None:
        """The latest scheduled or start time among the most recently recorded runs.

        Not finished_at: recovery marks lost runs finished at the (maybe jumped) time now.
        """
        (t,) = self._conn.execute(
            "SELECT MAX(MAX(scheduled_for, IFNULL(started_at, scheduled_for))) FROM "
            "(SELECT scheduled_for, started_at FROM runs ORDER BY id DESC LIMIT 100)"
        ).fetchone()
        return t

    @_guarded
    def output_bytes(self) -> int:
        """Bytes of captured output stored, of all runs."""
        # length() of a BLOB reads the record header, not the blob's overflow pages.
        return self._conn.execute("SELECT IFNULL(SUM(length(data)), 0) FROM outputs").fetchone()[0]

    @_guarded
    def prune_output(self, max_bytes: int) -> int:
        """Remove the output of the oldest finished runs until all output fits `max_bytes`.

        The runs stay; their output is marked as pruned (`Run.output_pruned`). A running
        run's output is never removed. Returns how many outputs were removed.
        """
        excess = self.output_bytes() - max_bytes
        removed = after = 0
        while excess > 0:
            batch, size = [], 0
            for run_id, n in self._conn.execute(
                "SELECT o.run_id, length(o.data) FROM outputs o JOIN runs r ON r.id = o.run_id "
                "WHERE o.run_id > ? AND o.truncated != ? AND length(o.data) > 0 "
                "AND r.status != 'running' ORDER BY o.run_id LIMIT 500",
                (after, _OUTPUT_PRUNED),
            ).fetchall():
                after = run_id
                batch.append(run_id)
                size += n
                if size >= excess:
                    break
            if not batch:
                break  # the rest is running runs' output
            with self._transaction() as conn:
                conn.execute(
                    f"UPDATE outputs SET data = x'', truncated = ? WHERE run_id IN "
                    f"({_placeholders(len(batch))})",
                    (_OUTPUT_PRUNED, *batch),
                )
            removed += len(batch)
            excess -= size
        return removed

    # -- reads --------------------------------------------------------------------------------

    def _runs(self, sql: str, params: Sequence[Any] = ()) -> list[Run]:
        return [_run_from_row(row) for row in self._conn.execute(sql, params)]

    @_guarded
    def running(self) -> list[Run]:
        """Runs whose status is `running`, oldest first."""
        # INDEXED BY: without ANALYZE statistics the planner would rather scan the table in id order
        # than sort the few rows the partial index yields.
        return self._runs(
            f"SELECT {_RUN_COLUMNS} FROM runs r INDEXED BY runs_running "
            "LEFT JOIN outputs o ON o.run_id = r.id WHERE r.status = 'running' ORDER BY r.id"
        )

    running_runs = running

    @_guarded
    def daemon(self) -> DaemonState | None:
        row = self._conn.execute(
            f"SELECT {', '.join(_DAEMON_FIELDS)} FROM daemon WHERE id = 1"
        ).fetchone()
        return None if row is None else DaemonState(*row)

    @_guarded
    def jobs(self) -> list[JobRow]:
        """The daemon's current jobs in jobs-file order."""
        return [
            JobRow(name, schedule, command, description, next_run, bool(enabled), line, *retry)
            for name, schedule, command, description, next_run, enabled, line, *retry in self._conn.execute(
                "SELECT name, schedule, command, description, next_run, enabled, line, "
                "retry_at, retry_attempt, retry_attempts FROM jobs ORDER BY position"
            )
        ]

    @_guarded
    def paused(self) -> dict[str, float]:
        """Paused jobs and since when."""
        return dict(self._conn.execute("SELECT job, since FROM paused ORDER BY job"))

    @_guarded
    def get_kv(self, key: str, default: str | None = None) -> str | None:
        row = self._conn.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return default if row is None else row[0]

    def good_jobs(self) -> GoodJobs | None:
        """The last good jobs file stored by set_good_jobs, or None."""
        found = _json_kv(self.get_kv(_GOOD_JOBS))
        try:
            return GoodJobs(str(found["path"]), bool(found["system"]), float(found["loaded_at"]),
                            str(found["text"]).encode("utf-8", "surrogateescape"))
        except (KeyError, TypeError, ValueError):
            return None

    def running_version(self) -> RunningVersion | None:
        found = _json_kv(self.get_kv(_RUNNING_VERSION))
        try:
            loaded_at = found["loaded_at"]
            return RunningVersion(str(found["origin"]), None if loaded_at is None else float(loaded_at),
                                  int(found["jobs"]))
        except (KeyError, TypeError, ValueError):
            return None

    @_guarded
    def job_names(self) -> list[str]:
        """Names of the jobs that have runs, sorted."""
        return [
            row[0]
            for row in self._conn.execute(
                f"{_JOB_NAMES_CTE} SELECT job FROM names WHERE job IS NOT NULL"
            )
        ]

    @_guarded
    def last_runs(self) -> dict[str, Run]:
        """The latest run (highest id, finished or not) of every job that has runs."""
        sql = (
            f"{_JOB_NAMES_CTE} SELECT {_RUN_COLUMNS} FROM names "
            "JOIN runs r ON r.id = (SELECT MAX(id) FROM runs WHERE job = names.job) "
            "LEFT JOIN outputs o ON o.run_id = r.id "
            "WHERE names.job IS NOT NULL"
        )
        return {run.job: run for run in self._runs(sql)}

    @_guarded
    def runs(
        self,
        job: str,
        *,
        limit: int | None = 20,
        failed: bool = False,
        since: float | None = None,
        after_id: int | None = None,
        before_id: int | None = None,
    ) -> list[Run]:
        """A job's runs, newest first; with `after_id`, those after it, oldest first (--follow).

        `failed` keeps FAILED_STATUSES (failed, timeout, killed, lost, missed, error).
        `since` keeps runs that started (or, never started, were scheduled) at or after it.
        `limit=None` means no limit.
        """
        return self._select_runs(["job = ?"], [job], limit=limit, failed=failed, since=since,
                                 after_id=after_id, before_id=before_id)

    @_guarded
    def runs_of_all_jobs(
        self,
        *,
        limit: int | None = 20,
        failed: bool = False,
        since: float | None = None,
        after_id: int | None = None,
    ) -> list[Run]:
        """Runs of every job, newest first (oldest first with `after_id`); filters as `runs`."""
        return self._select_runs([], [], limit=limit, failed=failed, since=since, after_id=after_id)

    def _select_runs(self, where: list[str], params: list[Any], *, limit: int | None,
                     failed: bool, since: float | None, after_id: int | None = None,
                     before_id: int | None = None) -> list[Run]:
        if since is not None:
            where.append("COALESCE(started_at, scheduled_for) >= ?")
            params.append(since)
        if after_id is not None:
            where.append("id > ?")
            params.append(after_id)
        if before_id is not None:
            where.append("id < ?")
            params.append(before_id)
        order = "ASC" if after_id is not None else "DESC"
        n = -1 if limit is None else max(int(limit), 0)  # LIMIT -1: no limit
        if not failed:
            cond = f"WHERE {' AND '.join(where)}" if where else ""
            return self._runs(
                # Unqualified names are runs' own: outputs has no column called so.
                f"{_SELECT_RUNS} {cond} ORDER BY r.id {order} LIMIT ?",
                (*params, n),
            )
        # One index range per failed status, each cut to `limit`, merged: bounded work even
        # for a job with a million runs, where `status IN (...) ORDER BY id` would sort them all.
        # (Across jobs there is no (status, id) index: each arm walks ids newest first.)
        arms = []
        arm_params: list[Any] = []
        for status in FAILED_STATUSES:
            arms.append(
                f"SELECT id FROM (SELECT id FROM runs WHERE {' AND '.join([*where, 'status = ?'])} "
                f"ORDER BY id {order} LIMIT ?)"
            )
            arm_params += [*params, str(status), n]
        return self._runs(
            f"{_SELECT_RUNS} WHERE r.id IN ({' UNION ALL '.join(arms)}) "
            f"ORDER BY r.id {order} LIMIT ?",
            (*arm_params, n),
        )

    @_guarded
    def retried_ok(self, runs: Sequence[Run]) -> dict[int, int]:
        """For each of `runs` that did not succeed but a later attempt of the same fire did:
        run id -> the attempt that succeeded. E.g. attempt 1 failed, attempt 2 succeeded:
        {id of attempt 1: 2}."""
        ids = [run.id for run in runs if run.status is not RunStatus.SUCCESS]
        found: dict[int, int] = {}
        for start in range(0, len(ids), 500):  # under SQLite's limit on parameters
            chunk = ids[start:start + 500]
            rows = self._conn.execute(
                "SELECT r.id, MIN(s.attempt) FROM runs r JOIN runs s ON s.job = r.job "
                "AND s.scheduled_for = r.scheduled_for AND s.attempt > r.attempt "
                f"AND s.status = 'success' WHERE r.id IN ({_placeholders(len(chunk))}) GROUP BY r.id",
                chunk,
            ).fetchall()
            found.update({run_id: attempt for run_id, attempt in rows})
        return found

    @_guarded
    def run(self, run_id: int) -> Run | None:
        runs = self._runs(f"{_SELECT_RUNS} WHERE r.id = ?", (run_id,))
        return runs[0] if runs else None

    @_guarded
    def output(self, run_id: int) -> tuple[bytes, bool] | None:
        """A run's captured output and whether it was truncated; None if none was saved.

        Output removed by the size bound reads as (b"", False); `Run.output_pruned` says so.
        """
        row = self._conn.execute(
            "SELECT data, truncated FROM outputs WHERE run_id = ?", (run_id,)
        ).fetchone()
        return None if row is None else (bytes(row[0]), row[1] == 1)

    @_guarded
    def stats(self, job: str, n: int = 20) -> tuple[float | None, float | None]:
        """Success rate (0..1) of the job's last `n` invocations that ran or could not start
        (a retried run counts as its last attempt) and median duration (s) of its last `n` runs in RAN_STATUSES.

        (None, None) when there are none; e.g. 3 successes of 4 runs lasting 1, 2, 3, 10 s
        give (0.75, 2.5).
        """
        # Walk the job's runs newest first and stop at the n-th one that ran: ~n row reads.
        # (One index range per status, merged, reads up to 4n rows and was 10x slower on a
        # log of a million runs.) INDEXED BY keeps the planner from sorting all of a job's
        # rows out of the (job, status, id) index instead.
        # An `error` run (could not start) counts against the rate, as a failed one does, but
        # has no duration.
        counted = (*RAN_STATUSES, RunStatus.ERROR)
        rows = self._conn.execute(
            "SELECT status, finished_at - started_at, scheduled_for FROM runs INDEXED BY runs_job_id "
            f"WHERE job = ? AND status IN ({_placeholders(len(counted))}) "
            "ORDER BY id DESC LIMIT ?",
            (job, *map(str, counted), 3 * n),
        ).fetchall()
        if not rows:
            return None, None
        # The rate counts invocations: a run whose retry succeeded counts as the success it
        # became. Newest first, so the first row of a scheduled time is its last attempt.
        outcome: dict[float, str] = {}
        for status, _, scheduled_for in rows:
            if scheduled_for not in outcome:
                if len(outcome) == n:
                    break
                outcome[scheduled_for] = status
        rate = sum(1 for status in outcome.values() if status == "success") / len(outcome)
        ran = [d for status, d, _ in rows if status != "error"][:n]
        durations = [d for d in ran if d is not None]
        return rate, _median(durations)

    @_guarded
    def last_scheduled(
        self, job: str, triggers: Sequence[str] = ("schedule", "catchup")
    ) -> float | None:
        """The latest scheduled_for among the job's runs with these triggers."""
        triggers = [str(t) for t in triggers]
        if not triggers:
            return None
        # Walk the unique index (job, scheduled_for, ...) backwards to the first match.
        row = self._conn.execute(
            f"SELECT scheduled_for FROM runs WHERE job = ? AND trigger IN "
            f"({_placeholders(len(triggers))}) ORDER BY scheduled_for DESC LIMIT 1",
            (job, *triggers),
        ).fetchone()
        return None if row is None else row[0]

    @_guarded
    def has_run(self, job: str, trigger: str, boot_id: str) -> bool:
        """Whether the job has a run with this trigger in this boot (for @reboot)."""
        return self._conn.execute(
            "SELECT 1 FROM runs WHERE job = ? AND trigger = ? AND boot_id = ? LIMIT 1",
            (job, str(trigger), boot_id),
        ).fetchone() is not None

    @_guarded
    def last_started(self, job: str) -> float | None:
        """When the job's latest-started run started."""
        return self._conn.execute(
            "SELECT MAX(started_at) FROM runs WHERE job = ?", (job,)
        ).fetchone()[0]

    @_guarded
    def last_success(self, job: str) -> float | None:
        """When the job's latest successful run finished (for @after after a restart)."""
        row = self._conn.execute(
            "SELECT finished_at FROM runs WHERE job = ? AND status = 'success' ORDER BY id DESC LIMIT 1",
            (job,),
        ).fetchone()
        return row[0] if row else None

    @_guarded
    def last_success_since(self, job: str, since: float) -> bool:
        """Whether the job has a successful run that finished at or after `since` (for @after)."""
        return self._conn.execute(
            "SELECT 1 FROM runs WHERE job = ? AND status = 'success' AND finished_at >= ? LIMIT 1",
            (job, since),
        ).fetchone() is not None


# -- corruption ---------------------------------------------------------------------------------


class _Corrupt(Exception):
    def __init__(self, detail: str):
        detail = " ".join(detail.split())  # quick_check reports one problem a line
        super().__init__(detail)
        self.detail = detail if len(detail) <= 200 else detail[:197] + "..."


def _readonly_uri(path: str) -> str:
    return "file:" + urllib.parse.quote(path) + "?mode=ro"


def _probe(path: str, busy_timeout: float, check: bool) -> int:
    """The file's user_version; _Corrupt if it is not a sound SQLite database.

    `check` adds PRAGMA quick_check, which reads every page.

    Done on a read-only connection: closing a read-write one would delete a -wal file that
    belongs to a damaged database (or checkpoint into it), and those bytes are history to keep.
    A locked database is waited for (busy timeout) like any read, and is not corruption.
    """
    conn = sqlite3.connect(_readonly_uri(path), uri=True, timeout=busy_timeout,
                           isolation_level=None)
    try:
        conn.execute("PRAGMA schema_version").fetchone()  # reads the header and the schema
        if check:
            rows = conn.execute("PRAGMA quick_check").fetchall()
            if rows != [("ok",)]:
                raise _Corrupt("; ".join(str(row[0]) for row in rows[:3]))
        return conn.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.Error as exc:
        if _is_corruption(exc):
            raise _Corrupt(str(exc)) from exc
        raise _wrap(path, exc) from exc
    finally:
        conn.close()


def _move_aside(path: str, now: float | None) -> str:
    """Rename a corrupt run log (and its -wal/-shm) to <path>.corrupt-<UTC time>; the new path.

    The old bytes are kept for a person to inspect or recover: history is never deleted.
    """
    if now is None:
        now = clock.wall()  # the module's one clock read, and only to name the file
    stamp = datetime.fromtimestamp(now, tz=timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    target = f"{path}.corrupt-{stamp}"
    n = 1
    while os.path.lexists(target) or os.path.lexists(target + "-wal"):
        n += 1
        target = f"{path}.corrupt-{stamp}-{n}"
    try:
        os.rename(path, target)
        for suffix in ("-wal", "-shm", "-journal"):
            if os.path.lexists(path + suffix):
                os.rename(path + suffix, target + suffix)
    except OSError as exc:
        raise RunLogError(
            f"run log {path} is corrupt and could not be moved aside: {exc.strerror or exc}"
        ) from exc
    return target
