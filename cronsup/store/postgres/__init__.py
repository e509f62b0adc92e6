"""The PostgreSQL run store, for several hosts sharing one schedule (schema, writes, reads, store)."""

from cronsup.store.postgres.store import PostgresStore

__all__ = ["PostgresStore"]
