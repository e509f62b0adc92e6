"""The first run store: a SQLite file (schema.py, writes.py, reads.py, joined in store.py)."""

__all__ = ["SqliteStore"]


def __getattr__(name: str):
    # Imported on first use: a PostgreSQL run log never needs it.
    if name == "SqliteStore":
        from cronsup.store.sqlite.store import SqliteStore

        return SqliteStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
