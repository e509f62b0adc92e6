"""One run's OS side: spawn a job in its own session, stream its output into a bounded
buffer, signal its whole process tree, reap it. No policy: the daemon decides when.

Every function here returns at once: nothing sleeps, waits or reads the run log.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pwd
import resource
import signal
import subprocess
from collections.abc import Container, Iterable
from dataclasses import dataclass, field

import psutil

from cronsup import clock, plaincmd
from cronsup.model import JobSpec

# Debian cron's PATH for jobs (crontab(5)); a jobs file overrides it with PATH=.
DEFAULT_PATH = "/usr/bin:/bin"

_READ_CHUNK = 64 * 1024
# read_output stops after this much even if the pipe is still not empty, so that a job
# printing without end cannot hold the single-threaded daemon inside one call; the fd stays
# readable and the selector comes straight back to it.
_READ_BUDGET = 16 * _READ_CHUNK
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# /proc/PID/stat's start time is the process's CLOCK_BOOTTIME at clone, cut to clock ticks.
_NS_PER_TICK = 10**9 // _CLOCK_TICKS if 10**9 % _CLOCK_TICKS == 0 else None
# Signals after which a stopped process must be continued to act on them (as systemd does).
_NO_CONT_AFTER = frozenset({signal.SIGKILL, signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN,
                            signal.SIGTTOU, signal.SIGCONT})
# With SIGKILL, scan and kill again while new descendants keep appearing (a forking loop).
_KILL_ROUNDS = 4
# Every job process carries these in its environment, and its descendants inherit them:
# which run it belongs to, and which run log (daemon) started it. They find a job's
# processes after its daemon crashed, or after they left its process tree (setsid, a
# double fork); see find_marked.
RUN_ID_VAR = "CRONSUP_RUN_ID"
STORE_VAR = "CRONSUP_STORE"
# errno values of a spawn that may succeed if tried again shortly: out of file
# descriptors (the daemon's or the system's), processes or memory for a fork.
_TRANSIENT = frozenset({errno.EMFILE, errno.ENFILE, errno.EAGAIN, errno.ENOMEM})


class SpawnError(Exception):
    """A job could not be started; `reason` is one line a person can act on.

    `transient`: the system ran short of something (file descriptors, processes) and the
    same spawn may work in a moment; it is not the job's fault.
    """

    def __init__(self, reason: str, transient: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.transient = transient


class OutputBuffer:
    """Keeps at most `limit` bytes of a stream: its first half and its last half.

    With limit 10, feeding b"abcdefghijklmnop" keeps b"abcde" and b"lmnop", and
    snapshot() is (b"abcde\\n[... 6 bytes cut ...]\\nlmnop", True).
    """

    def __init__(self, limit: int) -> None:
        self.limit = max(0, limit)
        self._head_limit = self.limit // 2
        self._tail_limit = self.limit - self._head_limit
        self._head = bytearray()
        self._tail = bytearray()  # may grow to twice _tail_limit before it is trimmed
        self.total = 0
        self.changed = False

    def feed(self, data: bytes) -> None:
        """Account for `data` and keep what fits in the head or the tail."""
        if not data:
            return
        self.total += len(data)
        self.changed = True
        room = self._head_limit - len(self._head)
        if room > 0:
            self._head += data[:room]
            data = data[room:]
        if not data or self._tail_limit == 0:
            return
        if len(data) >= self._tail_limit:
            self._tail = bytearray(data[-self._tail_limit:])
            return
        self._tail += data
        # Trim only when the tail is twice its size, so each byte is moved at most once
        # more: feeding stays linear in the bytes fed, memory stays within 2 * limit.
        if len(self._tail) >= 2 * self._tail_limit:
            del self._tail[: len(self._tail) - self._tail_limit]

    def snapshot(self) -> tuple[bytes, bool]:
        """(kept bytes, truncated?); a truncated one has a marker line between head and tail."""
        tail = bytes(self._tail[-self._tail_limit:]) if self._tail_limit else b""
        cut = self.total - len(self._head) - len(tail)
        if cut <= 0:
            return bytes(self._head) + tail, False
        return bytes(self._head) + b"\n[... %d bytes cut ...]\n" % cut + tail, True


@dataclass
class Child:
    """One running job process: the leader of its own session and process group."""

    run_id: int
    pid: int  # == its process group id and session id
    create_time: float  # psutil's create_time (seconds since the epoch)
    started_at: float  # clock.wall() at spawn
    fd: int | None  # non-blocking read end of stdout+stderr; None after EOF or close
    output: OutputBuffer
    # The kernel's start time in clock ticks since boot: the process's identity. Unlike
    # create_time it does not move when the wall clock is set, so a clock step between
    # spawn and kill cannot make us refuse to signal our own job.
    start_ticks: int = 0
    # Descendants seen by signal_tree, pid -> start ticks: once their parent dies they
    # reparent away from the tree, and a later SIGKILL must still reach them.
    seen_descendants: dict[int, int] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Exit:
    """How a reaped process ended and what it used."""

    pid: int
    exit_code: int | None  # None when ended by a signal
    signal: int | None
    cpu_s: float  # user + system CPU of it and its waited-for descendants
    # Peak resident memory, bytes, of it and its waited-for descendants. At exec Linux
    # folds the peak of the address space left behind into ru_maxrss, and a job's shell
    # execs from the daemon's (shared by vfork, or copied by fork when switching users):
    # a small job reports about the daemon's own peak. A floor, not the job's size.
    max_rss: int


def build_environment(job: JobSpec, pw: pwd.struct_passwd) -> dict[str, str]:
    """The job's whole environment: cron's base, then the file's lines and `env`, in order.

    Nothing comes from the daemon's own environment (no NOTIFY_SOCKET, no secrets).
    """
    env = {
        "SHELL": job.shell,
        "PATH": DEFAULT_PATH,
        "HOME": pw.pw_dir,
        "LOGNAME": pw.pw_name,
        "USER": pw.pw_name,
    }
    env.update(job.environment)  # later pairs win, as later lines do in a crontab
    # crontab(5) on Debian: "LOGNAME is the user that the job is running from, and may not
    # be changed." USER names the same thing; a job must not be able to claim another one.
    env["LOGNAME"] = env["USER"] = pw.pw_name
    return env


def spawn(job: JobSpec, run_id: int, *, store: str = "",
          nofile: tuple[int, int] | None = None, env: dict[str, str] | None = None) -> Child:
    """Start `job.shell -c job.command` in a new session (a plain command without its shell,
    see plaincmd); raise SpawnError if it cannot.

    `store` marks the process as started from that run log (see find_marked); `nofile`,
    the RLIMIT_NOFILE the job gets instead of the daemon's raised one; `env`, this run's
    own variables (its parameters and CRONSUP_*), set over the jobs file's. Nothing else
    escapes: one job that cannot start must never stop the daemon's loop.
    """
    try:
        return _spawn(job, run_id, store, nofile, env or {})
    except SpawnError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever it is, it is this one run's error
        raise SpawnError(f"cannot start {_show(job.shell)}: {type(exc).__name__}: {exc}") from None


def _spawn(job: JobSpec, run_id: int, store: str, nofile: tuple[int, int] | None,
           run_env: dict[str, str]) -> Child:
    _check_strings(job)
    try:
        pw, switch = _resolve_user(job.user)
    except SpawnError as exc:
        raise _short_of_fds() or exc from None
    env = build_environment(job, pw)
    env.update(run_env)
    env[RUN_ID_VAR] = str(run_id)  # set last: the jobs file cannot change a job's marks
    env.pop(STORE_VAR, None)
    if store:
        env[STORE_VAR] = store
    cwd, places = None, None
    if switch:
        # The child enters the directory after it has dropped root, as cron does: the
        # kernel then checks the job's own user's right to enter it, ACLs included, and a
        # path the daemon never resolved cannot be swapped under it.
        places = (job.workdir,) if job.workdir is not None else (pw.pw_dir, "/")
    else:
        # cron runs a job in its user's home; nobody's home is /nonexistent, so fall back to /.
        cwd = job.workdir if job.workdir is not None else (pw.pw_dir if os.path.isdir(pw.pw_dir) else "/")
    launched = None
    plain = plaincmd.direct(job.shell, job.command, env)
    if plain is not None:
        # A plain command without its shell (README, "Running jobs"): the shell would only
        # split it and exec it, after a fork of its own. dash exports PWD, so it is set here.
        program, argv = plain
        if places is None:
            where, direct_places = cwd, None
        else:  # home, or / when there is none; a home the user cannot enter goes to the shell
            where = places[0] if len(places) == 1 or os.path.isdir(places[0]) else "/"
            direct_places = (where,)
        env["PWD"] = os.path.realpath(where)
        try:
            launched = _launch(job, argv, program, env, cwd, direct_places, nofile, switch)
        except _LaunchFailed:
            # Not found, not executable, a script without #!, a directory it cannot enter:
            # the shell's own start gives the message and the exit code it gives today.
            del env["PWD"]
    if launched is None:
        try:
            launched = _launch(job, [job.shell, "-c", job.command], None, env, cwd, places, nofile, switch)
        except _LaunchFailed as failed:
            exc, entered = failed.exc, failed.entered
            if isinstance(exc, OSError):
                raise SpawnError(_popen_reason(exc, job, cwd, bool(switch)),
                                 transient=exc.errno in _TRANSIENT) from None
            if entered is not None and places is not None:
                where = places[0] if len(places) == 1 else "/"
                raise SpawnError(f"workdir {where}: {os.strerror(entered)} "
                                 f"(as user {job.user!r})") from None
            raise SpawnError(f"cannot start {job.shell}: {exc}") from None
    proc, read_fd, limit_set, ticks = launched
    _detach(proc)
    os.set_blocking(read_fd, False)
    if not limit_set:
        # Fallback when the daemon's low fds are all taken: set from outside, so the job
        # runs with the raised limit until this call lands.
        try:
            resource.prlimit(proc.pid, resource.RLIMIT_NOFILE, nofile)
        except (ProcessLookupError, PermissionError, ValueError):
            pass
    if ticks is None:
        try:
            ticks = start_ticks(proc.pid)
        except OSError:  # out of fds right now: the job runs, its identity is unknown
            ticks = None
    return Child(
        run_id=run_id,
        pid=proc.pid,
        create_time=ticks / _CLOCK_TICKS + clock.boot_time() if ticks is not None else 0.0,
        started_at=clock.wall(),
        fd=read_fd,
        output=OutputBuffer(job.output_limit),
        start_ticks=ticks or 0,
    )


class _LaunchFailed(Exception):
    """Popen's OSError or SubprocessError, and the errno the child's chdir reported."""

    def __init__(self, exc: Exception, entered: int | None) -> None:
        super().__init__(str(exc))
        self.exc = exc
        self.entered = entered


def _launch(job: JobSpec, argv: list[str], program: str | None, env: dict[str, str],
            cwd: str | None, places: tuple[str, ...] | None, nofile: tuple[int, int] | None,
            switch: dict) -> tuple[subprocess.Popen, int, bool, int | None]:
    """Popen `argv` with the job's stdin, output pipe, user, directory and fd limit:
    (process, read end of its output, whether its fd limit is set, its start ticks if the
    clock tells them). Raises _LaunchFailed."""
    parent_ends: list[int] = []  # the child's ends of stdin and the pipes: closed here always
    read_fd = report_r = None
    try:
        stdin = _stdin_fd(job.stdin)
        if stdin != subprocess.DEVNULL:
            parent_ends.append(stdin)
        read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
        parent_ends.append(write_fd)
        extra = {}
        if places is not None:
            report_r, report_w = os.pipe2(os.O_CLOEXEC)
            parent_ends.append(report_w)
            extra["preexec_fn"] = _enter(places, report_w, nofile)
            limit_set = True  # in the child, before its exec
        else:
            limit_set = nofile is None
        with _limit_for_child(None if limit_set else nofile, write_fd) as lowered:
            before = clock.boot_ns()
            proc = subprocess.Popen(
                argv, executable=program,
                stdin=stdin, stdout=write_fd, stderr=write_fd,
                cwd=cwd, env=env, umask=0o022,
                close_fds=True, start_new_session=True, restore_signals=True,
                **switch, **extra,
            )
            after = clock.boot_ns()
        limit_set = limit_set or lowered
        # The kernel stamped the child's start between the two reads: when both fall in
        # one clock tick, that tick is its start time, and /proc need not be read (the read
        # costs some 40 us while the child is still exec'ing; 1,000 of them in a burst).
        ticks = _same_tick(before, after)
    except BaseException as exc:
        if read_fd is not None:
            os.close(read_fd)
        entered = _entered(report_r)
        if isinstance(exc, (OSError, subprocess.SubprocessError)):
            raise _LaunchFailed(exc, entered) from None
        raise
    finally:
        for fd in parent_ends:
            os.close(fd)
        if report_r is not None:
            try:
                os.close(report_r)
            except OSError:
                pass
    return proc, read_fd, limit_set, ticks


def _same_tick(before: int, after: int) -> int | None:
    """The clock tick holding both CLOCK_BOOTTIME readings, or None."""
    if _NS_PER_TICK is None or before // _NS_PER_TICK != after // _NS_PER_TICK:
        return None
    return before // _NS_PER_TICK


def read_output(child: Child) -> bool:
    """Read what the pipe holds now into child.output; at EOF close the fd and return False."""
    if child.fd is None:
        return False
    budget = _READ_BUDGET
    while budget > 0:
        try:
            data = os.read(child.fd, _READ_CHUNK)
        except BlockingIOError:
            return True
        if not data:
            os.close(child.fd)
            child.fd = None
            return False
        child.output.feed(data)
        budget -= len(data)
    return True


def close_output(child: Child) -> None:
    """Keep what is in the pipe now, then close it without waiting for its writers.

    For a process that has exited while a grandchild still holds the pipe open.
    """
    if child.fd is None:
        return
    read_output(child)  # its budget exceeds a pipe's capacity: this empties the pipe once
    if child.fd is not None:
        os.close(child.fd)
        child.fd = None


def signal_tree(child: Child, sig: int, marked: dict[int, int] | None = None,
                table: dict[int, _Proc] | None = None) -> None:
    """Send `sig` to the job's process group and to every descendant found, now or before.

    Descendants are found from the root and from any descendant seen on an earlier call,
    or given in `marked` (pid -> start ticks: processes found carrying the run's mark, see
    find_marked, such as a setsid'd grandchild whose parent has died), and each is checked
    against its start time first, so a reused pid is never signalled.
    A process that is already gone is not an error. After a catchable signal, SIGCONT
    follows so that a stopped job can act on it. Call it before reaping the job: once
    the root is reaped its group id could belong to a stranger, so then only descendants
    seen on an earlier call (and the group they prove still ours) are signalled.
    """
    if marked:
        child.seen_descendants.update((pid, ticks) for pid, ticks in marked.items() if pid != child.pid)
    rounds = _KILL_ROUNDS if sig == signal.SIGKILL else 1
    for round_ in range(rounds):
        # A table given by the caller (one scan for many jobs) serves the first round.
        if table is None or round_ > 0:
            table = _process_table()
        new = _descendants(child, table)
        known = {pid: ticks for pid, ticks in child.seen_descendants.items()
                 if pid in table and table[pid].ticks == ticks}
        found_new = bool(new.keys() - known.keys())
        known.update(new)
        child.seen_descendants = known
        if _group_is_ours(child, table):
            killpg(child.pid, sig)
        for pid, ticks in known.items():
            _kill_exact(pid, ticks, sig)
        if not found_new:
            break
    if sig not in _NO_CONT_AFTER:
        if _group_is_ours(child, table):
            killpg(child.pid, signal.SIGCONT)
        for pid, ticks in child.seen_descendants.items():
            _kill_exact(pid, ticks, signal.SIGCONT)


def tree_alive(child: Child, marked: dict[int, int] | None = None,
               table: dict[int, _Proc] | None = None) -> bool:
    """Whether any process of the job's tree (as signal_tree finds it) still runs; zombies
    do not count."""
    if table is None:
        table = _process_table()
    known = dict(child.seen_descendants)
    known.update(marked or {})
    known = {pid: ticks for pid, ticks in known.items() if pid in table and table[pid].ticks == ticks}
    probe = Child(run_id=child.run_id, pid=child.pid, create_time=0.0, started_at=0.0, fd=None,
                  output=OutputBuffer(0), start_ticks=child.start_ticks, seen_descendants=known)
    pids = set(known) | set(_descendants(probe, table))
    if _is_root_alive(probe, table):
        pids.add(child.pid)
    if _group_is_ours(probe, table):
        pids.update(pid for pid, proc in table.items() if proc.pgid == child.pid)
    return any(not table[pid].zombie for pid in pids if pid in table)


def adopt(run_id: int, pid: int | None, ticks: int, marked: dict[int, int]) -> Child:
    """A job's processes left by an earlier daemon, to signal with signal_tree: its shell
    `pid` started at `ticks` if known, and the processes found carrying its mark."""
    if not pid:
        # No shell to start from: the leader of a marked session (the job's shell, reaped
        # by init), else any marked process, stands in as the root.
        pid, ticks = min(marked.items(), key=lambda item: (_sid(item[0]) != item[0], item[1]))
    return Child(run_id=run_id, pid=pid, create_time=0.0, started_at=0.0, fd=None,
                 output=OutputBuffer(0), start_ticks=ticks, seen_descendants=dict(marked))


def find_marked(store: str) -> dict[int, dict[int, int]]:
    """Processes started from the run log marked `store`: run id -> {pid: start ticks}.

    Read from /proc/PID/environ, the environment each process was exec'd with (root reads
    every process's; another user, its own, which is where its daemon's jobs run). A
    descendant carries its job's mark unless it replaced its environment (env -i).
    """
    want = f"\0{STORE_VAR}={store}\0".encode()
    prefix = f"\0{RUN_ID_VAR}=".encode()
    found: dict[int, dict[int, int]] = {}
    try:
        pids = psutil.pids()
    except OSError:
        return found
    me = os.getpid()
    for pid in pids:
        if pid == me:
            continue
        # The start time first: if the pid is reused before the environment is read, the
        # stranger's ticks are not the ones recorded, and nothing signals it.
        try:
            proc = _read_stat(pid)
        except OSError:
            continue
        if proc is None or proc.zombie:
            continue
        env = _read_environ(pid)
        if env is None or want not in env:
            continue
        at = env.find(prefix)
        if at < 0:
            continue
        value = env[at + len(prefix):env.index(b"\0", at + 1)]
        if value.isdigit():
            found.setdefault(int(value), {})[pid] = proc.ticks
    return found


def _read_environ(pid: int) -> bytes | None:
    try:
        fd = os.open(f"/proc/{pid}/environ", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:  # gone, another user's, or out of fds: not one we can find
        return None
    chunks = [b"\0"]  # so the first variable, too, is preceded by a NUL
    try:
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    except OSError:
        return None
    finally:
        os.close(fd)
    chunks.append(b"\0")
    return b"".join(chunks)


def _sid(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except OSError:
        return None


def reap(pids: Iterable[int]) -> list[Exit]:
    """Collect those of `pids` that have exited, without waiting for the others."""
    exits = []
    for pid in pids:
        try:
            got, status, usage = os.wait4(pid, os.WNOHANG)
        except ChildProcessError:
            continue
        if got:
            exits.append(_exit(got, status, usage))
    return exits


def reap_exited(known: Container[int]) -> list[Exit]:
    """Collect the exited children among `known` in O(exits), not O(children).

    waitid(WNOWAIT) names an exited child without collecting it; wait4 then collects it
    with its resource use. When the first exited child is not one of ours (the mail
    thread's sendmail, whose own wait collects it), fall back to asking for each pid.
    """
    exits = []
    while True:
        try:
            info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return exits
        if info is None:
            return exits
        if info.si_pid not in known:
            return exits + reap([pid for pid in known if pid not in {e.pid for e in exits}])
        got, status, usage = os.wait4(info.si_pid, os.WNOHANG)
        if got:
            exits.append(_exit(got, status, usage))


def reap_any() -> list[Exit]:
    """Collect every exited child, ours or an orphan's (for a daemon that runs as PID 1)."""
    exits = []
    while True:
        try:
            got, status, usage = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            return exits
        if not got:
            return exits
        exits.append(_exit(got, status, usage))


def start_ticks(pid: int) -> int | None:
    """When process `pid` started, in clock ticks since boot; None if there is no such pid.

    Together with the pid (and the boot), this names one process for good: unlike
    psutil's create_time it does not move when the wall clock is set.
    """
    proc = _read_stat(pid)
    return proc.ticks if proc else None


# --- spawning ----------------------------------------------------------------------------


def _resolve_user(name: str | None) -> tuple[pwd.struct_passwd, dict]:
    """The job's passwd entry, and Popen's user/group/extra_groups when a switch is needed."""
    euid = os.geteuid()
    if name is None:
        try:
            return pwd.getpwuid(euid), {}
        except KeyError:
            raise SpawnError(f"the daemon's uid {euid} has no passwd entry") from None
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        raise SpawnError(f"user {name!r}: no such user") from None
    groups = os.getgrouplist(pw.pw_name, pw.pw_gid)
    if euid != 0:
        if pw.pw_uid != euid:
            me = user_name(euid)
            raise SpawnError(f"user {name!r}: the daemon runs as {me!r} "
                             "and can switch users only as root")
        return pw, {}
    if pw.pw_uid == 0 and os.getegid() == pw.pw_gid and set(os.getgroups()) == set(groups):
        # root running a root job: nothing to switch, and Popen keeps its fast vfork path
        return pw, {}
    return pw, {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": groups}


def _short_of_fds() -> SpawnError | None:
    """A transient SpawnError if no file descriptor can be opened now: the passwd lookup
    then fails as if the user did not exist, and must not be taken for that."""
    try:
        os.close(os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC))
    except OSError as exc:
        if exc.errno in (errno.EMFILE, errno.ENFILE):
            return SpawnError(f"cannot look up the job's user: {exc.strerror}", transient=True)
    return None


def user_name(uid: int) -> str:
    """The login name of `uid`, or the number when it has none."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


@contextlib.contextmanager
def _limit_for_child(nofile: tuple[int, int] | None, newest_fd: int):
    """Lower the daemon's soft RLIMIT_NOFILE to `nofile` while Popen forks, so the child
    inherits it; yield whether it did.

    The daemon raised its soft limit; jobs get the one it was started with, as systemd
    gives services (1024: select() and close-every-fd loops expect it). vfork leaves no
    place to set it in the child (a preexec_fn forks instead: ~10x slower per start), and
    setting it from outside after the exec races the job's first commands. While lowered,
    new fds of this process must fit under the old limit, so it is lowered only while the
    fds this start takes are well under it (`newest_fd`: the last one it opened).
    """
    if nofile is None or newest_fd >= nofile[0] - _LOW_FDS_SPARE:
        yield False
        return
    raised = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile[0], raised[1]))
    except (OSError, ValueError):
        yield False
        return
    try:
        yield True
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, raised)


_LOW_FDS_SPARE = 16  # Popen's own pipe and other threads' fds while the limit is lowered


def _enter(places: tuple[str, ...], report_fd: int, nofile: tuple[int, int] | None = None):
    """Popen's preexec_fn: in the child, after setgroups/setgid/setuid, set the job's fd
    limit (`nofile`) and chdir to the first of `places` that works; else write errno to
    `report_fd` and fail the start.

    It runs between fork and exec, so it does nothing but system calls (no imports, no
    logging, no locks another thread could have held).
    """
    def enter() -> None:
        if nofile is not None:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, nofile)
            except (OSError, ValueError):
                pass
        code = 0
        for place in places:
            try:
                os.chdir(place)
                return
            except OSError as e:
                code = e.errno or errno.EIO
        os.write(report_fd, b"%d" % code)
        raise OSError(code, "chdir")
    return enter


def _entered(report_r: int | None) -> int | None:
    """The errno the child's chdir reported, if it reported one."""
    if report_r is None:
        return None
    try:
        os.set_blocking(report_r, False)
        data = os.read(report_r, 32)
    except OSError:
        return None
    return int(data) if data.isdigit() else None


def _check_strings(job: JobSpec) -> None:
    """What exec cannot carry (a NUL, a '=' in a variable's name) is this run's error.

    `check` refuses these already; a JobSpec made some other way must not crash the daemon.
    """
    for what, value in (("shell", job.shell), ("workdir", job.workdir or ""), ("the command", job.command),
                        ("user", job.user or "")):
        if "\0" in value:
            raise SpawnError(f"{what} {_show(value)} contains a NUL character")
    for key, value in job.environment:
        if "\0" in key or "\0" in value or "=" in key or not key:
            raise SpawnError(f"environment variable {_show(key)}: not a valid name or value")


def _show(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")


def _stdin_fd(text: str | None) -> int:
    """/dev/null, or a rewound memfd holding cron's `%` input (it never blocks the daemon)."""
    if text is None:
        return subprocess.DEVNULL
    fd = os.memfd_create("cronsup-stdin", os.MFD_CLOEXEC)
    try:
        view = memoryview(text.encode("utf-8", "surrogateescape"))
        while view:
            view = view[os.write(fd, view):]
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _popen_reason(exc: OSError, job: JobSpec, cwd: str | None, switched: bool) -> str:
    """One line from Popen's OSError, naming what failed: the shell, the workdir, the user."""
    what = exc.strerror or str(exc)
    if switched and exc.filename is None:
        # Python reports a failure before exec (setgroups, setgid, setuid) with the cwd as
        # its file name; a switching start passes no cwd (its chdir is in _enter).
        return f"cannot start as user {job.user!r}: {what}"
    if cwd is not None and exc.filename == cwd:
        return f"workdir {cwd}: {what}"
    if exc.filename is not None:
        return f"shell {job.shell}: {what}"
    return f"cannot start {job.shell}: {what}"


def _detach(proc: subprocess.Popen) -> None:
    # The daemon reaps with wait4 (reap/reap_any). Left alone, Popen.__del__ would
    # waitpid() this pid when the object is collected, stealing the exit status, or worse
    # a later child's that reused the pid. A set returncode makes Popen leave it alone.
    proc.returncode = 0


# --- the process tree ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Proc:
    ppid: int
    pgid: int
    ticks: int  # start time in clock ticks since boot
    zombie: bool = False


def _parse_stat(data: bytes) -> _Proc:
    # /proc/PID/stat: "pid (comm) state ppid pgrp session ... starttime(22) ..."; comm may
    # hold spaces and parentheses, so split after the last ")".
    fields = data[data.rindex(b")") + 2:].split()
    return _Proc(ppid=int(fields[1]), pgid=int(fields[2]), ticks=int(fields[19]),
                 zombie=fields[0] in (b"Z", b"X"))


def _read_stat(pid: int) -> _Proc | None:
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, ProcessLookupError):  # gone, or exiting as we look (ESRCH)
        return None
    try:
        data = os.read(fd, 4096)
    except ProcessLookupError:  # it ended between open and read
        return None
    finally:
        os.close(fd)
    return _parse_stat(data) if data else None




def process_table() -> dict[int, _Proc]:
    """One scan of every process, to share between many calls of signal_tree/tree_alive."""
    return _process_table()


def _process_table() -> dict[int, _Proc]:
    """Every process now: pid -> (ppid, pgid, start ticks). One pass over /proc, as psutil
    makes for children(recursive=True), but keeping the start ticks it does not expose."""
    table = {}
    for pid in psutil.pids():
        proc = _read_stat(pid)
        if proc is not None:
            table[pid] = proc
    return table


def _descendants(child: Child, table: dict[int, _Proc]) -> dict[int, int]:
    """pid -> ticks of every live process below the root or below a descendant seen before."""
    children: dict[int, list[int]] = {}
    for pid, proc in table.items():
        children.setdefault(proc.ppid, []).append(pid)
    roots = [pid for pid, ticks in child.seen_descendants.items()
             if pid in table and table[pid].ticks == ticks]
    if _is_root_alive(child, table):
        roots.append(child.pid)
    found: dict[int, int] = {}
    while roots:
        for pid in children.get(roots.pop(), ()):
            if pid not in found and pid != child.pid:
                found[pid] = table[pid].ticks
                roots.append(pid)
    return found


def _is_root_alive(child: Child, table: dict[int, _Proc]) -> bool:
    # Not yet reaped (a zombie counts): its pid, and so its group id, cannot be reused.
    proc = table.get(child.pid)
    return proc is not None and proc.ticks == child.start_ticks


def _group_is_ours(child: Child, table: dict[int, _Proc]) -> bool:
    """killpg(child.pid) reaches only our job: the root is unreaped, or a descendant we
    know is still in the group (a group id is never reused while the group has members)."""
    if _is_root_alive(child, table):
        return True
    return any(table.get(pid) is not None and table[pid].ticks == ticks
               and table[pid].pgid == child.pid
               for pid, ticks in child.seen_descendants.items())


def killpg(pgid: int, sig: int) -> None:
    """Signal a process group; one that is already gone is not an error."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass  # already gone


def _kill_exact(pid: int, ticks: int, sig: int) -> None:
    """Signal `pid` only if it is still the process that started at `ticks`."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    except OSError:
        pidfd = None  # no pidfd (old kernel): a check-then-kill race window remains
    try:
        # With a pidfd, the check below and the signal address the same process.
        if start_ticks(pid) != ticks:
            return
        if pidfd is not None:
            signal.pidfd_send_signal(pidfd, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass
    finally:
        if pidfd is not None:
            os.close(pidfd)


# --- reaping -------------------------------------------------------------------------------


def _exit(pid: int, status: int, usage) -> Exit:
    if os.WIFSIGNALED(status):
        code, sig = None, os.WTERMSIG(status)
    else:
        code, sig = os.WEXITSTATUS(status), None
    return Exit(
        pid=pid,
        exit_code=code,
        signal=sig,
        cpu_s=usage.ru_utime + usage.ru_stime,
        max_rss=usage.ru_maxrss * 1024,  # KiB on Linux
    )

