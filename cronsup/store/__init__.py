"""The run store: runs, their output, the daemon's state and jobs, behind one interface.

`open_store(location)` gives the store for a location (a file path today: SQLite); the
protocol is in protocol.py, the records in records.py.
"""

from __future__ import annotations

import os

from cronsup.store.protocol import RunReader, RunStore, RunWriter
from cronsup.store.records import (
    FAILED_STATUSES,
    RAN_STATUSES,
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
    RunningVersion,
    StoredHistory,
)
from cronsup.store.sqlite import SqliteStore

__all__ = [
    "FAILED_STATUSES", "RAN_STATUSES", "DaemonState", "GoodJobs", "JobRow", "NewRun", "Run",
    "RunLogError", "RunLogMissing", "RunReader", "RunStore", "RunWriter", "RunningVersion",
    "SqliteStore", "StoredHistory", "open_store", "DELIVERED", "DROPPED", "GAVE_UP", "PENDING",
    "Delivery", "DeliveryAttempt", "OutboxItem",
]


def open_store(location: str | os.PathLike[str], *, readonly: bool = False, **options) -> RunStore:
    """The store at `location`: a file path opens SQLite (options as SqliteStore.open).

    A URL scheme such as postgresql:// will choose another class; none is known yet.
    """
    text = os.fspath(location)
    if "://" in text:
        scheme = text.split("://", 1)[0]
        raise RunLogError(f"run log {text}: no store for {scheme}:// URLs in this cronsup")
    return SqliteStore.open(text, readonly=readonly, **options)
