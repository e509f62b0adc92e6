"""What a daemon trusts: files and directories no other user can have written.

Cron's rules (Debian cron, database.c): open a file once, without following a final
symlink and without blocking on a FIFO, check the open file (fstat: a regular file, its
owner, its mode) and read from that same descriptor. Checking a path with stat() and then
opening it again leaves a window in which someone who can write the directory swaps the
file. So the directories on the way must not let others replace an entry either.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Collection

_MAX_LINKS = 40  # as the kernel's limit on symlinks in one lookup
MAX_FILE = 16 * 1024 * 1024  # a jobs file larger than this is a mistake (or an attack)


class Untrusted(Exception):
    """A file or directory others could have written; the message says what and how to fix it."""


def _who(owners: Collection[int]) -> str:
    names = ["root" if uid == 0 else f"uid {uid}" for uid in sorted(set(owners))]
    return " or ".join(names)


def _check_directory(path: str, st: os.stat_result, owners: Collection[int], sticky_ok: bool) -> None:
    mode = stat.S_IMODE(st.st_mode)
    if st.st_uid not in owners:
        raise Untrusted(f"the directory {path} is owned by uid {st.st_uid}, not {_who(owners)}, "
                        f"so that user can replace what is in it")
    if mode & 0o022 and not (sticky_ok and mode & stat.S_ISVTX):
        # A shared sticky directory (/tmp) is meant to stay writable: point to a private one.
        fix = (f"use a directory of your own inside it (install -d -m 0700 {os.path.join(path, 'cronsup')})"
               if mode & stat.S_ISVTX else f"fix it with chmod go-w {path}")
        raise Untrusted(f"the directory {path} is writable by other users (mode {mode:o}), so "
                        f"they can replace what is in it; {fix}")


def check_directory(directory: str, owners: Collection[int], *, sticky_ok: bool) -> None:
    """Raise Untrusted unless `directory` and every directory on the way to it (symlinks
    followed) are owned by one of `owners` and not writable by group or others.

    A sticky directory on the way (such as /tmp) is fine: others cannot rename or remove
    an entry they do not own there. The last directory may be sticky only when
    `sticky_ok`: a file checked after opening it is safe in it, a file created in it later
    (a lock, SQLite's -wal) is not, since others can plant a name before it exists.
    Never raises anything but Untrusted.
    """
    pending = [part for part in os.path.abspath(directory).split("/") if part][::-1]
    current, links = "/", 0
    try:
        _check_directory("/", os.lstat("/"), owners, sticky_ok=True)
        while pending:
            part = pending.pop()
            if part == ".":
                continue
            if part == "..":
                current = os.path.dirname(current)  # `current` has no symlinks in it
                continue
            path = os.path.join(current, part)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                links += 1
                if links > _MAX_LINKS:
                    raise Untrusted(f"{directory}: too many symbolic links on the way")
                if st.st_uid not in owners:
                    raise Untrusted(f"{path} is a symbolic link owned by uid {st.st_uid}, "
                                    f"not {_who(owners)}")
                target = os.readlink(path)
                if target.startswith("/"):
                    current = "/"
                pending.extend(part for part in target.split("/")[::-1] if part)
                continue
            if not stat.S_ISDIR(st.st_mode):
                raise Untrusted(f"{path} is not a directory")
            _check_directory(path, st, owners, sticky_ok=True)
            current = path
        # The last directory again, with its own rule (it may have come through a symlink).
        _check_directory(current, os.lstat(current), owners, sticky_ok=sticky_ok)
    except OSError as e:
        raise Untrusted(f"cannot check the directory {directory}: {e.strerror or e}") from None


def read_file(path: str, owners: Collection[int] | None, limit: int = MAX_FILE,
              shown: str | None = None) -> bytes:
    """The bytes of the regular file at `path` (named `shown` in messages), read through one open.

    With `owners` (a root daemon): a final symlink is not followed, and the open file must
    be owned by one of `owners`, not writable by group or others and have one name, else
    Untrusted. A FIFO or device is refused without blocking on it. OSError when it cannot
    be opened.
    """
    shown = path if shown is None else shown
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
    if owners is not None:
        flags |= os.O_NOFOLLOW
    try:
        fd = os.open(path, flags)
    except OSError as e:
        if owners is not None and e.errno == errno.ELOOP:  # O_NOFOLLOW met a symlink
            raise Untrusted(f"{shown}: refused: it is a symbolic link; a root daemon does not "
                            "follow one to its jobs file (give the real path)") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            what = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise Untrusted(f"{shown}: refused: it is {what}")
        if owners is not None:
            check_file(shown, st, owners)
        if st.st_size > limit:
            raise Untrusted(f"{shown}: refused: {st.st_size} bytes is too large for a jobs file "
                            f"(at most {limit})")
        chunks, size = [], 0
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise Untrusted(f"{shown}: refused: too large for a jobs file (at most {limit} bytes)")
        return b"".join(chunks)
    finally:
        os.close(fd)


def check_file(path: str, st: os.stat_result, owners: Collection[int]) -> None:
    """Raise Untrusted unless the open file `st` describes is one of `owners`' own, and only theirs."""
    if st.st_uid not in owners:
        raise Untrusted(f"{path}: refused: owned by uid {st.st_uid}, not {_who(owners)}; a root "
                        f"daemon runs only files root owns (chown root {path})")
    if st.st_mode & 0o022:
        raise Untrusted(f"{path}: refused: group- or other-writable (mode {st.st_mode & 0o777:o}); "
                        f"fix it with chmod go-w {path}")
    if st.st_nlink != 1:
        # Cron's rule too: a second name may be a link someone else made, elsewhere, to a
        # root-owned file whose text they can influence (a log, say).
        raise Untrusted(f"{path}: refused: it has {st.st_nlink} hard links; a root daemon reads "
                        "only a file with one name (copy it instead of linking)")
