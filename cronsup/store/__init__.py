"""The run store: runs, their output, the daemon's state and jobs, behind one interface.

`open_store(location)` gives the store for a location (a file path: SQLite; a
postgresql:// URL: PostgreSQL); the protocol is in protocol.py, the records in records.py.
"""

from __future__ import annotations

import os

from cronsup.store.protocol import RunReader, RunStore, RunWriter
from cronsup.store.records import (
    DURATION_BUCKETS,
    FAILED_STATUSES,
    NOTIFICATIONS_FAILED_COUNTER,
    RAN_STATUSES,
    Backfill,
    BackfillSlot,
    DELIVERED,
    DROPPED,
    GAVE_UP,
    PENDING,
    DaemonState,
    Delivery,
    DeliveryAttempt,
    GoodJobs,
    JobRow,
    NewRun,
    OutboxItem,
    Run,
    RunLogError,
    RunLogMissing,
    JobSummary,
    RunMark,
    RunningVersion,
    StoredCounter,
    StoredHistory,
)
from cronsup.store.postgres import schema as pg_schema

__all__ = [
    "FAILED_STATUSES", "RAN_STATUSES", "Backfill", "BackfillSlot", "DaemonState", "GoodJobs", "JobRow", "NewRun", "Run",
    "RunLogError", "RunLogMissing", "RunMark", "RunReader", "RunStore", "RunWriter", "RunningVersion",
    "SqliteStore", "StoredHistory", "open_store",
    "DURATION_BUCKETS", "NOTIFICATIONS_FAILED_COUNTER", "JobSummary", "StoredCounter",
    "DELIVERED", "DROPPED", "GAVE_UP", "PENDING", "Delivery", "DeliveryAttempt", "OutboxItem",
]


def open_store(location: str | os.PathLike[str], *, readonly: bool = False, **options) -> RunStore:
    """The store at `location`: a postgresql:// (or postgres://) URL opens PostgreSQL
    (options as PostgresStore.open), a file path SQLite (options as SqliteStore.open)."""
    text = os.fspath(location)
    if pg_schema.is_url(text):
        from cronsup.store.postgres import PostgresStore

        return PostgresStore.open(text, readonly=readonly, **options)
    options.pop("node", None)
    options.pop("lease", None)
    if "://" in text:
        scheme = text.split("://", 1)[0]
        raise RunLogError(f"run log {text}: no store for {scheme}:// URLs in this cronsup")
    from cronsup.store.sqlite.store import SqliteStore

    return SqliteStore.open(text, readonly=readonly, **options)


def __getattr__(name: str):
    # SqliteStore on first use: a PostgreSQL run log never imports the SQLite store.
    if name == "SqliteStore":
        from cronsup.store.sqlite.store import SqliteStore

        return SqliteStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
