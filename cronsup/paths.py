"""Where the jobs file, the run log and the control socket live by default."""

from __future__ import annotations

import os
from pathlib import Path


def default_jobs() -> str:
    """/etc/cronsup/jobs for root; ~/.config/cronsup/jobs (XDG_CONFIG_HOME) otherwise."""
    if os.geteuid() == 0:
        return "/etc/cronsup/jobs"
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(Path.home(), ".config")
    return os.path.join(base, "cronsup", "jobs")


def default_db() -> str:
    """/var/lib/cronsup/runs.db for root; ~/.local/state/cronsup/runs.db (XDG_STATE_HOME)."""
    if os.geteuid() == 0:
        return "/var/lib/cronsup/runs.db"
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(Path.home(), ".local", "state")
    return os.path.join(base, "cronsup", "runs.db")


def control_socket(db: str) -> str:
    """The daemon's control socket, beside its run log: the same --db pairs daemon and CLI."""
    return os.path.abspath(db) + ".sock"


def daemon_lock(db: str) -> str:
    """The file a daemon holds locked while it runs on this run log."""
    return os.path.abspath(db) + ".lock"


def start_journal(db: str) -> str:
    """Where the daemon notes each process as it starts, before the run log has its pid."""
    return os.path.abspath(db) + ".starts"


def store_mark(db: str) -> str:
    """The mark (CRONSUP_STORE) in every job's environment that names its run log: a short
    hash of the run log's real path, so daemons side by side never mistake each other's jobs."""
    import hashlib

    return hashlib.sha256(os.path.realpath(db).encode()).hexdigest()[:16]


def state_files(db: str) -> list[str]:
    """Every file a daemon makes beside its run log: SQLite's own, the lock, the socket."""
    base = os.path.abspath(db)
    return [base, base + "-wal", base + "-shm", base + "-journal", daemon_lock(db), control_socket(db)]
