"""The daemon's lock file: one daemon per run log, and the pid of the one that holds it.

The daemon takes the lock exclusive for its whole life and writes its pid into the file;
readers (`status`, `run --wait`, `logs --follow`) test it by taking it shared for an instant.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat

from cronsup import clock

TRY_EVERY, PATIENCE = 0.01, 0.5  # a reader's shared lock lasts microseconds


class LockError(Exception):
    """The lock file cannot be opened, or is not one the daemon made."""


class Held(Exception):
    """Another process holds the lock; `pid` is what its file says (None if not a number)."""

    def __init__(self, pid: int | None):
        super().__init__(pid)
        self.pid = pid


def take(path: str, pid: int) -> int:
    """Take the lock exclusive and write `pid` into it; the open fd, to keep for the lock's life.

    A refusal is tried again for a moment before it counts as another holder: a reader's
    shared lock (`holder`) would otherwise pass for one.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise LockError(f"cannot open {path}: {e.strerror}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
        os.close(fd)
        raise LockError(f"refusing {path}: not a regular file of the daemon's own user")
    try:
        for _ in clock.poll(TRY_EVERY, PATIENCE):
            if _try(fd, fcntl.LOCK_EX):
                break
        else:
            raise Held(_read_pid(fd))
    except OSError as e:
        os.close(fd)
        raise LockError(f"cannot lock {path}: {e.strerror}") from None
    except Held:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.write(fd, f"{pid}\n".encode())
    return fd


def holder(path: str) -> int | None:
    """The pid of the process holding the lock (-1 if its file names none), or None when
    nobody holds it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if _try(fd, fcntl.LOCK_SH):
            return None  # we got the lock: nobody holds it
        pid = _read_pid(fd)
        return -1 if pid is None else pid
    except OSError:
        return None
    finally:
        os.close(fd)


def _try(fd: int, kind: int) -> bool:
    """Whether the lock was taken; False when someone else holds it."""
    try:
        fcntl.flock(fd, kind | fcntl.LOCK_NB)
        return True
    except OSError as e:
        if e.errno not in (errno.EWOULDBLOCK, errno.EACCES):
            raise
        return False


def _read_pid(fd: int) -> int | None:
    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return int(text) if text.isdigit() else None
