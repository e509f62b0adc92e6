"""The PostgreSQL run store: a connection that is re-made when lost, every call bounded in time.

Unlike SQLite, several daemons (nodes) write at once. A lost connection is an error of the one
call (RunLogError, which the daemon's write queue keeps and retries); the next call connects
again. A call that gets no answer within `timeout` has its socket shut down, so a stalled
network never stalls the daemon's loop.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid

from cronsup.store.postgres import schema
from cronsup.store.postgres.schema import _psycopg, guarded
from cronsup.store.postgres.ledger import Ledger
from cronsup.store.postgres.outbox import Outbox
from cronsup.store.postgres.reads import Reads
from cronsup.store.postgres.webreads import WebReads
from cronsup.store.postgres.writes import Writes
from cronsup.store.kvdocs import KvDocs
from cronsup.store.records import RunLogError

log = logging.getLogger(__name__)


class PostgresStore(Reads, WebReads, Writes, Ledger, Outbox, KvDocs):
    """The run log in PostgreSQL. `PostgresStore.open(url)`; `node` names this daemon in the
    cluster (default: the host name); `lease`: how long a running run stays this node's
    without a heartbeat."""

    cluster = True

    def __init__(self, url: str, *, readonly: bool, node: str, timeout: float, lease: float):
        self.url = url
        self.path = schema.display(url)
        self.readonly = readonly
        self.node = node
        # This process's token: written in every run it claims and checked by every write to
        # such a run, so a node whose lease lapsed (its runs taken over) records nothing more.
        self.owner = f"{node}/{os.getpid()}/{uuid.uuid4().hex[:12]}"
        self.timeout = timeout
        self.lease = lease
        self._conn = None
        self._depth = 0
        self._lock = threading.Lock()

    @classmethod
    def open(cls, url: str, *, readonly: bool = False, node: str | None = None,
             timeout: float = 10.0, lease: float = 30.0, **_sqlite_options) -> PostgresStore:
        store = cls(url, readonly=readonly, node=node or schema.default_node(), timeout=timeout,
                    lease=lease)
        store._setup()
        return store

    def sibling(self) -> PostgresStore:
        """Another connection to this database, for another thread of this process (the
        alerts' sender): the same node and owner token (its claims are this process's),
        connected on its first call."""
        other = PostgresStore(self.url, readonly=self.readonly, node=self.node, timeout=self.timeout,
                              lease=self.lease)
        other.owner = self.owner
        return other

    @guarded
    def _setup(self) -> None:
        if self.readonly:
            schema.check_reader_version(self._conn, self.path)
        else:
            schema.migrate(self._conn, self.path)

    # -- the connection -------------------------------------------------------------------

    def _db(self):
        if self._conn is not None and not self._conn.closed and not self._conn.broken:
            return self._conn
        self._drop()
        psycopg = _psycopg()
        extra = {}
        if "connect_timeout" not in self.url:
            extra["connect_timeout"] = max(1, int(self.timeout))
        if "options" not in self.url:
            # Small indexed queries: compiling them (JIT, for their cost estimates) takes
            # longer than running them.
            extra["options"] = "-c jit=off"
        try:
            self._conn = psycopg.connect(self.url, autocommit=True, application_name="cronsup",
                                         **extra)
        except psycopg.Error as exc:
            raise schema.wrap(self.path, exc) from exc
        except Exception as exc:  # a malformed URL (psycopg.ProgrammingError is an Error)
            raise RunLogError(f"run log {self.path}: {exc}") from exc
        return self._conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    def _abort(self, conn) -> None:
        """Shut the socket of a call that got no answer in time (from the timer's thread)."""
        try:
            fd = conn.fileno()
        except Exception:
            return
        try:
            s = socket.socket(fileno=os.dup(fd))
        except OSError:
            return
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        finally:
            s.close()

    def close(self) -> None:
        self._drop()

    def set_busy_timeout(self, seconds: float) -> None:
        """No file lock to wait for here; the call timeout stays as opened."""

    def checkpoint(self) -> bool:
        return False  # PostgreSQL checkpoints by itself

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @guarded
    def schema_version(self) -> int:
        return schema.schema_version(self._conn)

    @guarded
    def db_now(self) -> float:
        """The database's clock (epoch seconds)."""
        return self._conn.execute(f"SELECT {schema.DB_NOW}").fetchone()[0]
