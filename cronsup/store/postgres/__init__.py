"""The PostgreSQL run store, for several hosts sharing one schedule (schema, writes, reads, store)."""

__all__ = ["PostgresStore"]


def __getattr__(name: str):
    # Imported on first use: `cronsup.store` reads the schema module (is_url) for every
    # command, and a SQLite run log never needs the rest.
    if name == "PostgresStore":
        from cronsup.store.postgres.store import PostgresStore

        return PostgresStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
