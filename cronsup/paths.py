"""Where the jobs file, the run log and the daemon's state directory (lock, socket) live."""

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


def is_url(db: str) -> bool:
    """A run log given as a URL (postgresql://...), not a file."""
    return "://" in db


def shown(db: str) -> str:
    """The run log as messages name it: a URL without its password."""
    if is_url(db):
        from cronsup.store.postgres.schema import display

        return display(db)
    return db


def state_dir(db: str, state_dir: str | None = None) -> str:
    """The directory of what identifies a daemon on this machine (lock, control socket, start
    journal): --state-dir (CRONSUP_STATE_DIR), else the run log's own directory (for a
    postgresql:// run log, the directory the default SQLite run log would be in)."""
    if state_dir:
        return os.path.abspath(state_dir)
    if is_url(db):
        return os.path.dirname(default_db())
    return os.path.dirname(os.path.abspath(db))


_state_dir_of = state_dir  # for the functions whose parameter shadows it


def _state_file(db: str, state_dir: str | None, suffix: str) -> str:
    # Beside a SQLite run log the names are the run log's own plus a suffix (runs.db.sock),
    # as they always were; in a --state-dir they do not depend on where the store is.
    if state_dir or is_url(db):
        state_dir = _state_dir_of(db, state_dir)
        return os.path.join(os.path.abspath(state_dir), "cronsup" + suffix)
    return os.path.abspath(db) + suffix


def control_socket(db: str, state_dir: str | None = None) -> str:
    """The daemon's control socket: the same --db (and --state-dir) pairs daemon and CLI."""
    return _state_file(db, state_dir, ".sock")


def daemon_lock(db: str, state_dir: str | None = None) -> str:
    """The file a daemon holds locked while it runs on this run log."""
    return _state_file(db, state_dir, ".lock")


def start_journal(db: str, state_dir: str | None = None) -> str:
    """Where the daemon notes each process as it starts, before the run log has its pid."""
    return _state_file(db, state_dir, ".starts")


def store_mark(db: str, state_dir: str | None = None) -> str:
    """The mark (CRONSUP_STORE) in every job's environment that names its run log: a short
    hash of the run log's real path, so daemons side by side never mistake each other's jobs.
    Daemons sharing one postgresql:// run log on a machine differ by their state directory."""
    import hashlib

    if is_url(db):
        return hashlib.sha256(f"{db}\0{_state_dir_of(db, state_dir)}".encode()).hexdigest()[:16]
    return hashlib.sha256(os.path.realpath(db).encode()).hexdigest()[:16]


def state_files(db: str, state_dir: str | None = None) -> list[str]:
    """Every file a daemon makes: SQLite's own beside the run log, the lock and the socket."""
    if is_url(db):
        return [daemon_lock(db, state_dir), control_socket(db, state_dir)]
    base = os.path.abspath(db)
    return [base, base + "-wal", base + "-shm", base + "-journal", daemon_lock(db, state_dir),
            control_socket(db, state_dir)]
