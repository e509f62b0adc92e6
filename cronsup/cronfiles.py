"""Cron's own files (/etc/crontab, /etc/cron.d/*, user crontabs): which ones cron would read, and their jobs.

Debian's cron rules, file by file (man 8 cron; its database.c): a file of /etc/cron.d whose
name is not made of letters, digits, '_' and '-' is ignored (`sysstat.dpkg-old`); a system
file must be root's and not group- or other-writable (a symlink is followed when it and its
target are root's); a user crontab must belong to the user it is named after, with mode
0600; any of them must be a regular file with one name. A file with an error is skipped as a
whole, as Debian's cron does ("Syntax error, this crontab file will be ignored"); the other
files are not affected. Reads files only: no clock, no daemon, no run log.
"""

from __future__ import annotations

import errno
import os
import pwd
import re
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from cronsup import jobsfile, names, trust
from cronsup.importer import cron_ignores
from cronsup.model import JobSpec

SYSTEM_CRONTAB = "etc/crontab"
CRON_D = "etc/cron.d"
SPOOL = "var/spool/cron/crontabs"
# What Debian's packages write to stay quiet where systemd runs (its timers do the work):
# `test -e /run/systemd/system || ...` and `if [ ! -d /run/systemd/system ]; then ...`.
_GUARD = re.compile(r"(?:\\?!\s*-[ed]\s+/run/systemd/system\b)"
                    r"|(?:\btest\s+-[ed]\s+/run/systemd/system/?\s*\|\|)"
                    r"|(?:\[\s+-[ed]\s+/run/systemd/system/?\s+\]\s*\|\|)")
GUARD_NOTE = ("guarded by /run/systemd/system: where systemd runs the line does nothing, as it "
              "did under cron (the package's systemd timer does that work); cronsup runs it "
              "unchanged")


class Verdict(StrEnum):
    """What cronsup (as cron) does with one of cron's files."""

    OK = "ok"  # read: its jobs run
    IGNORED = "ignored"  # cron does not read it either (its name, a directory): not a fault
    SKIPPED = "skipped"  # cron would refuse it (owner, mode, an error in it): its jobs do not run


class Kind(StrEnum):
    SYSTEM = "system"  # /etc/crontab
    CRON_D = "cron.d"  # /etc/cron.d/NAME
    USER = "user"  # /var/spool/cron/crontabs/USER


@dataclass(frozen=True)
class Source:
    """One of cron's files and what becomes of it."""

    path: str  # the path read (under --cron-root when given)
    kind: Kind
    verdict: Verdict
    reason: str | None = None  # why it is ignored or skipped
    errors: tuple[str, ...] = ()  # FILE:LINE: message, when it is skipped for its errors
    user: str | None = None  # a user crontab's user: whom its jobs run as
    jobs: tuple[JobSpec, ...] = ()  # named, with the [cron] options and cron's mail rule
    guarded: tuple[int, ...] = ()  # lines that do nothing where systemd runs (GUARD_NOTE)

    def to_json(self) -> dict:
        return {"path": self.path, "kind": str(self.kind), "verdict": str(self.verdict),
                "reason": self.reason, "errors": list(self.errors), "user": self.user,
                "jobs": [j.name for j in self.jobs], "guarded_lines": list(self.guarded)}


@dataclass(frozen=True)
class CronJobs:
    """Every source, and the jobs of those read, in source order."""

    sources: tuple[Source, ...]
    jobs: tuple[JobSpec, ...] = ()
    origins: dict[str, str] = field(default_factory=dict)  # job name -> "FILE:LINE"

    @property
    def refused(self) -> list[Source]:
        return [s for s in self.sources if s.verdict is Verdict.SKIPPED]


def watched_dirs(root: str = "/") -> list[str]:
    """The directories whose changes can change cron's jobs (the parents too: a cron.d or a
    spool created later)."""
    return [os.path.normpath(os.path.join(root, d))
            for d in (".", "etc", CRON_D, "var", "var/spool", "var/spool/cron", SPOOL)]


def signature(root: str = "/") -> tuple:
    """What changes when any source changes: each candidate file's lstat, name and place."""
    out: list[tuple] = []
    for path in _candidates(root):
        try:
            st = os.lstat(path)
        except OSError:
            continue
        out.append((path, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode,
                    st.st_uid, st.st_nlink))
        if stat.S_ISLNK(st.st_mode):  # a link in cron.d: its target's edits count too
            try:
                t = os.stat(path)
                out.append((path, t.st_ino, t.st_size, t.st_mtime_ns, t.st_ctime_ns, t.st_mode, t.st_uid))
            except OSError:
                pass
    return tuple(out)


def _candidates(root: str) -> list[str]:
    paths = [os.path.join(root, SYSTEM_CRONTAB)]
    for directory in (CRON_D, SPOOL):
        try:
            entries = sorted(os.listdir(os.path.join(root, directory)))
        except OSError:
            continue
        paths += [os.path.join(root, directory, name) for name in entries]
    return paths


def check_sources(root: str = "/", cron_options: dict[str, Any] | None = None, *,
                  taken: Iterable[str] = (),
                  lookup_user: Callable[[str], pwd.struct_passwd] = pwd.getpwnam) -> CronJobs:
    """Every one of cron's files under `root` with its verdict, and the jobs of those read.

    `cron_options` are the jobs file's [cron] block; `taken` the names its own jobs have (a
    cron job never takes one: it gets a suffix). What `cronsup check --cron`, the daemon and
    `takeover` (which refuses while any source is SKIPPED) all use.
    """
    sources = [_read(path, root, lookup_user) for path in _candidates(root)
               if os.path.exists(path) or os.path.islink(path)]
    return _finish(sources, cron_options or {}, set(taken))


def _kind(path: str, root: str) -> Kind:
    relative = os.path.relpath(path, root)
    if relative == SYSTEM_CRONTAB:
        return Kind.SYSTEM
    return Kind.CRON_D if os.path.dirname(relative) == CRON_D else Kind.USER


def _read(path: str, root: str, lookup_user: Callable[[str], pwd.struct_passwd]) -> Source:
    kind = _kind(path, root)
    name = os.path.basename(path)
    user = name if kind is Kind.USER else None
    if kind is Kind.CRON_D and (why := cron_ignores(path)):
        return Source(path, kind, Verdict.IGNORED, why)
    if kind is Kind.USER and (name.startswith((".", "#", "tmp.")) or name.endswith("~")):
        # `crontab -e` writes tmp.XXXXXX here, then renames it over the user's file.
        return Source(path, kind, Verdict.IGNORED, "cron ignores it: a temporary or hidden file "
                      "(crontab writes tmp.* here while it saves)", user=None)
    try:
        st = os.lstat(path)
    except OSError as e:
        return Source(path, kind, Verdict.SKIPPED, f"cannot read it: {e.strerror}", user=user)
    if stat.S_ISDIR(st.st_mode):
        return Source(path, kind, Verdict.IGNORED, "cron ignores it: a directory", user=user)
    owner = 0
    if kind is Kind.USER:
        try:
            owner = lookup_user(name).pw_uid
        except KeyError:
            return Source(path, kind, Verdict.SKIPPED, f"no user {name!r} on this host: cron "
                          "refuses a crontab without its user (ORPHAN)", user=user)
    try:
        data = _open_checked(path, st, kind, owner, name)
    except trust.Untrusted as e:
        return Source(path, kind, Verdict.SKIPPED, str(e), user=user)
    except OSError as e:
        return Source(path, kind, Verdict.SKIPPED, f"cannot read it: {e.strerror}", user=user)
    system = kind is not Kind.USER
    try:
        jf = jobsfile.parse_bytes(data, path, system=system, cron=True)
    except jobsfile.JobsfileErrors as e:
        return _broken(path, kind, user, [str(x) for x in e.errors])
    if system:
        unknown = []
        for job in jf.jobs:
            try:
                lookup_user(job.user or "")
            except KeyError:
                unknown.append(f"{path}:{job.line}: no user {job.user!r} on this host (the "
                               "user field)")
        if unknown:
            return _broken(path, kind, user, unknown)
    jobs = tuple(replace(job, user=user) for job in jf.jobs) if user else jf.jobs
    guarded = tuple(job.line for job in jobs if _GUARD.search(job.command))
    return Source(path, kind, Verdict.OK, user=user, jobs=jobs, guarded=guarded)


def _broken(path: str, kind: Kind, user: str | None, errors: list[str]) -> Source:
    count = len(errors)
    return Source(path, kind, Verdict.SKIPPED, f"{count} error{'s' if count > 1 else ''} in it: "
                  "cron ignores the whole file (its other jobs do not run either)",
                  errors=tuple(errors), user=user)


def _open_checked(path: str, st: os.stat_result, kind: Kind, owner: int, name: str) -> bytes:
    """The file's bytes, read through one open, if cron would read it; else Untrusted."""
    if stat.S_ISLNK(st.st_mode):
        if kind is Kind.USER:
            raise trust.Untrusted("it is a symbolic link: cron reads no link in the spool")
        if st.st_uid != 0:
            raise trust.Untrusted(f"a symbolic link owned by uid {st.st_uid}: cron follows a "
                                  "link only when it and its target are root's")
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
    if kind is Kind.USER:
        flags |= os.O_NOFOLLOW
    try:
        fd = os.open(path, flags)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise trust.Untrusted("it is a symbolic link: cron reads no link in the spool") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise trust.Untrusted("not a regular file")
        mode = stat.S_IMODE(st.st_mode)
        if kind is Kind.USER:
            if st.st_uid != owner:
                raise trust.Untrusted(f"owned by {_user_name(st.st_uid)}, not by {name}: cron "
                                      f"refuses it (WRONG FILE OWNER) rather than run someone "
                                      f"else's file as {name}; `crontab -u {name} FILE` installs it")
            if mode != 0o600:
                raise trust.Untrusted(f"mode {mode:04o}: cron reads a crontab only with mode 0600, "
                                      f"so that no one else can read or change it "
                                      f"(chmod 600 {path})")
        else:
            if st.st_uid != 0:
                raise trust.Untrusted(f"owned by {_user_name(st.st_uid)}, not root: cron refuses "
                                      f"it (WRONG FILE OWNER); chown root {path}")
            if mode & 0o022:
                raise trust.Untrusted(f"group- or other-writable (mode {mode:04o}): cron refuses "
                                      f"it (INSECURE MODE); chmod go-w {path}")
        if st.st_nlink != 1:
            raise trust.Untrusted(f"it has {st.st_nlink} hard links: cron reads only a file "
                                  "with one name")
        if st.st_size > trust.MAX_FILE:
            raise trust.Untrusted(f"{st.st_size} bytes is too large for a crontab")
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _user_name(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


# -- jobs ------------------------------------------------------------------------------------


def _finish(sources: list[Source], options: dict[str, Any], taken: set[str]) -> CronJobs:
    """Name the jobs of the sources read (stable, readable), then apply [cron] and cron's mail rule."""
    entries = [(s, job) for s in sources if s.verdict is Verdict.OK for job in s.jobs]
    pinned = [(name, "", "") for name in sorted(taken)]
    named = names.assign(
        pinned + [(None, job.command, f"{job.schedule.text} {job.raw_command}") for _, job in entries],
        readable_names=True,
        prefixes=[""] * len(pinned) + [f"{s.user}-" if s.user else "" for s, _ in entries])[len(pinned):]
    renamed: dict[int, JobSpec] = {}
    origins: dict[str, str] = {}
    for (source, job), name in zip(entries, named):
        renamed[id(job)] = _with_options(replace(job, name=name), options)
        origins[name] = f"{source.path}:{job.line}"
    out = [replace(s, jobs=tuple(renamed[id(j)] for j in s.jobs)) for s in sources]
    return CronJobs(tuple(out), tuple(j for s in out for j in s.jobs), origins)


def _with_options(job: JobSpec, options: dict[str, Any]) -> JobSpec:
    """`job` with the [cron] options; what the file itself sets (its environment lines:
    SHELL, CRON_TZ, MAILTO, any variable) beats the block, as the more specific.

    Cron's mail rule: with no MAILTO in the file, the output goes to the job's user (a
    system line's user field, a crontab's owner), unless [cron] sets `mailto`."""
    env = dict(job.environment)
    changes: dict[str, Any] = {}
    for key, value in options.items():
        if key == "env":
            changes["environment"] = tuple({**value, **env}.items())
        elif key == "shell":
            changes["shell"] = env.get("SHELL") or value
        elif key == "timezone":
            changes["timezone"] = env.get("CRON_TZ") or value
        elif key == "mailto":
            changes["mailto"] = env["MAILTO"] if "MAILTO" in env else value
        else:
            changes[key] = value
    if "MAILTO" not in env and "mailto" not in options:
        changes["mailto"] = job.user or "root"
    return replace(job, auto_named=False, **changes)
