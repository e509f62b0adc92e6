"""The SQLite run store: one file holding runs, their output, the daemon's state and its jobs.

The daemon is the only writer; the CLI (`status`, `logs`) opens the same file read-only, also
while the daemon is stopped. WAL mode lets those readers see committed writes without ever
blocking the daemon. Like huey's SqliteStorage, the connection is set up once (WAL, busy
timeout) and every write goes through one transaction helper, `_transaction()` (writes.py).

This package makes no policy decisions and reads no clock: callers pass times as float epoch
seconds. It never deletes history to recover from an error; a corrupt file is renamed aside,
not removed.
"""

from __future__ import annotations

import logging
import os
import sqlite3

from cronsup.store.kvdocs import KvDocs
from cronsup.store.records import RunLogError, RunLogMissing
from cronsup.store.sqlite import schema
from cronsup.store.sqlite.outbox import Outbox
from cronsup.store.sqlite.reads import Reads
from cronsup.store.sqlite.schema import _Corrupt, _guarded, _readonly_uri, _wrap
from cronsup.store.sqlite.webreads import WebReads
from cronsup.store.sqlite.writes import Writes

log = logging.getLogger(__name__)


class SqliteStore(Reads, WebReads, Writes, Outbox, KvDocs):
    """A connection to the run log. `SqliteStore.open(path)` for the daemon, `readonly=True` for the CLI.

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
    ) -> SqliteStore:
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
    def _open_reader(cls, path: str, busy_timeout: float) -> SqliteStore:
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
            schema.check_reader_version(conn, path)
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
    ) -> SqliteStore:
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
            version = schema._probe(path, busy_timeout, check)
            if version > schema.SCHEMA_VERSION:  # refuse before changing anything in the file
                raise RunLogError(schema._newer_message(path, version))
            conn = schema.connect_writer(path, busy_timeout, synchronous)
        except _Corrupt as corrupt:
            moved = schema._move_aside(path, now)
            log.warning(
                "run log %s is corrupt (%s); moved it to %s and started a new run log",
                path, corrupt.detail, moved,
            )
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
                os.close(fd)
                conn = schema.connect_writer(path, busy_timeout, synchronous)
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

    def sibling(self, busy_timeout: float = 5.0) -> SqliteStore:
        """Another connection to this run log, for another thread of this process (the
        alerts' sender). Opened through SQLite alone: `open` creates the file with os.open
        and closes that descriptor, and closing any descriptor of the file drops every
        fcntl lock this process holds on it, those of the connections already open too
        (another process could then take the run log for unused and reset its -wal)."""
        conn = schema.connect_writer(self.path, busy_timeout, self._synchronous)
        return SqliteStore(conn, self.path, readonly=self.readonly, synchronous=self._synchronous)

    @_guarded
    def _migrate(self) -> None:
        schema.migrate(self._conn, self.path, self._transaction)

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

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @_guarded
    def schema_version(self) -> int:
        return self._conn.execute("PRAGMA user_version").fetchone()[0]
