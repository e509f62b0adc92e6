"""The first run store: a SQLite file (schema.py, writes.py, reads.py, joined in store.py)."""

from cronsup.store.sqlite.store import SqliteStore

__all__ = ["SqliteStore"]
