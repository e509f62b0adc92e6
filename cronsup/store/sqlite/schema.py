"""The SQLite run log's file: schema and migrations, error translation, opening checks.

The connection is set up once (WAL, busy timeout), as huey's SqliteStorage does; a corrupt
file is renamed aside, never removed.
"""

from __future__ import annotations

import functools
import logging
import os
import sqlite3
import urllib.parse
from datetime import datetime, timezone

from cronsup import clock
from cronsup.store.rows import OUTPUT_PRUNED
from cronsup.store.records import (
    DURATION_BUCKET_COUNTER,
    DURATION_BUCKETS,
    DURATION_SUM_COUNTER,
    RAN_STATUSES,
    RUNS_COUNTER,
    RunLogError,
    bucket_label,
)

log = logging.getLogger(__name__)

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

_OUTPUT_PRUNED = OUTPUT_PRUNED  # outputs.truncated of an output pruned away (store/rows.py)

# Pruning by age counts from the earlier of `now` and the newest run's time plus this: a
# wall clock that jumped ahead (100 days, for a minute) must not make all history look old.
PRUNE_CLOCK_MARGIN = 3600.0


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
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            raise _wrap(self.path, exc) from exc

    return wrapper


# -- schema -------------------------------------------------------------------------------------

def _bucket_sql(duration: str) -> str:
    """SQL giving the `le` label of the bucket a duration falls in."""
    arms = " ".join(f"WHEN {duration} <= {b!r} THEN '{bucket_label(b)}'" for b in DURATION_BUCKETS)
    return f"(CASE {arms} ELSE '+Inf' END)"


_RAN_SQL = f"status IN ({', '.join(repr(str(s)) for s in RAN_STATUSES)})"

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
    (
        # Start-up's history (store.history): whether a job ran @reboot in this boot, without
        # reading every run of every job. Partial: it costs nothing to the other inserts.
        "CREATE INDEX runs_reboot ON runs (job, boot_id) WHERE trigger = 'reboot'",
    ),
    (
        # `cronsup run JOB --env K=V`: the run's parameters as a JSON object (NULL: none).
        "ALTER TABLE runs ADD COLUMN params TEXT",
        # `cronsup backfill`: a range of a job's scheduled times, written before the first
        # slot starts so a restarted daemon goes on with it. state: active, done, cancelled.
        """CREATE TABLE backfills (
            id INTEGER PRIMARY KEY,
            job TEXT NOT NULL,
            range_from REAL NOT NULL,
            range_to REAL NOT NULL,
            reprocess TEXT NOT NULL,
            max_parallel INTEGER NOT NULL,
            created_at REAL NOT NULL,
            state TEXT NOT NULL,
            ended_at REAL,
            skipped INTEGER NOT NULL
        )""",
        "CREATE INDEX backfills_active ON backfills (job) WHERE state = 'active'",
        # The slots to run; run_id is set in the transaction that records the slot's run.
        """CREATE TABLE backfill_slots (
            backfill_id INTEGER NOT NULL REFERENCES backfills (id) ON DELETE CASCADE,
            scheduled_for REAL NOT NULL,
            attempt INTEGER NOT NULL,
            run_id INTEGER,
            PRIMARY KEY (backfill_id, scheduled_for)
        )""",
    ),
    (
        # Counters that never go down (metrics): pruning deletes runs, never these. `labels`
        # is json_object() of the labels sorted by name, so equal labels are one key. An
        # upgraded run log starts them from the runs it holds.
        """CREATE TABLE counters (
            name TEXT NOT NULL,
            labels TEXT NOT NULL,
            value REAL NOT NULL,
            PRIMARY KEY (name, labels)
        ) WITHOUT ROWID""",
        f"INSERT INTO counters (name, labels, value) SELECT '{RUNS_COUNTER}', "
        "json_object('job', job, 'status', status), COUNT(*) FROM runs "
        "WHERE status != 'running' GROUP BY job, status",
        f"INSERT INTO counters (name, labels, value) SELECT '{DURATION_BUCKET_COUNTER}', "
        f"json_object('job', job, 'le', {_bucket_sql('MAX(finished_at - started_at, 0)')}), COUNT(*) "
        f"FROM runs WHERE {_RAN_SQL} AND started_at IS NOT NULL AND finished_at IS NOT NULL "
        "GROUP BY 1, 2",
        f"INSERT INTO counters (name, labels, value) SELECT '{DURATION_SUM_COUNTER}', "
        "json_object('job', job), SUM(MAX(finished_at - started_at, 0)) "
        f"FROM runs WHERE {_RAN_SQL} AND started_at IS NOT NULL AND finished_at IS NOT NULL "
        "GROUP BY job",
    ),
    (
        # Alerts waiting to be delivered (and those done, for `logs --run`): the outbox.
        # `target` is the URL or command as the jobs file gives it (file:/path unread), a
        # secret; `shown` is what messages may show of it (scheme and host).
        """CREATE TABLE outbox (
            id INTEGER PRIMARY KEY,
            run_id INTEGER,
            job TEXT NOT NULL,
            event TEXT NOT NULL,
            channel TEXT NOT NULL,
            target TEXT NOT NULL,
            shown TEXT NOT NULL,
            payload BLOB NOT NULL,
            created_at REAL NOT NULL,
            state TEXT NOT NULL,
            tries INTEGER NOT NULL DEFAULT 0,
            next_try REAL
        )""",
        "CREATE INDEX outbox_due ON outbox (next_try) WHERE state = 'pending'",
        "CREATE INDEX outbox_run ON outbox (run_id)",
        """CREATE TABLE outbox_attempts (
            id INTEGER PRIMARY KEY,
            outbox_id INTEGER NOT NULL REFERENCES outbox (id) ON DELETE CASCADE,
            job TEXT NOT NULL,
            channel TEXT NOT NULL,
            shown TEXT NOT NULL,
            at REAL NOT NULL,
            ok INTEGER NOT NULL,
            answer TEXT NOT NULL,
            next_try REAL
        )""",
        "CREATE INDEX outbox_attempts_item ON outbox_attempts (outbox_id)",
        "CREATE INDEX outbox_attempts_channel ON outbox_attempts (job, channel, shown, id)",
    ),
]
SCHEMA_VERSION = len(MIGRATIONS)

_DAEMON_FIELDS = (
    "pid", "pid_start", "started_at", "stopped_at", "host", "boot_id", "jobs_file",
    "config_error", "last_seen",
)
_DAEMON_UPDATABLE = frozenset({"config_error", "last_seen", "stopped_at", "jobs_file"})


def _newer_message(path: str, version: int) -> str:
    return (
        f"run log {path} was written by a newer cronsup (schema {version}; this one knows "
        f"up to {SCHEMA_VERSION})"
    )


def _placeholders(n: int) -> str:
    return ", ".join("?" * n)


def migrate(conn: sqlite3.Connection, path: str, transaction) -> None:
    """Apply the MIGRATIONS the file lacks, in one transaction (`transaction()` opens it)."""
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version == SCHEMA_VERSION:
        return
    with transaction() as conn:
        # Read again under the write lock: another process may have migrated meanwhile.
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise RunLogError(_newer_message(path, version))
        for step in MIGRATIONS[version:]:
            for statement in step:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


def check_reader_version(conn: sqlite3.Connection, path: str) -> None:
    """Refuse a file a reader cannot read: empty, newer or older than this schema."""
    from cronsup.store.records import RunLogMissing

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


def connect_writer(path: str, busy_timeout: float, synchronous: str) -> sqlite3.Connection:
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
        now = clock.wall()  # only to name the file
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
