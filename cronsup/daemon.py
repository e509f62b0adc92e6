"""The daemon: the only impure loop. Signals, file watching, the run log, processes.

One thread decides (this loop); a watcher thread only pokes a pipe when the jobs file's
directory changes. Signal handlers only set flags (and Python's wakeup fd wakes the loop).
"""

from __future__ import annotations

import logging
import os
import resource
import selectors
import signal
import socket
import stat
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace

import psutil

from cronsup import clock, control, jobsfile, lockfile, mail, notify, paths, runner, suggest, trust
from cronsup.model import JobsFile, JobSpec, Overlap, RunStatus, Trigger
from cronsup.runlog import (DaemonState, GoodJobs, JobRow, NewRun, Run, RunLog, RunLogError,
                            RunningVersion, iso)
from cronsup.supervisor import Action, History, Kill, Now, Record, Start, Supervisor
from cronsup.writequeue import WriteQueue, output_size

log = logging.getLogger("cronsup")

HEARTBEAT = 60.0  # how often last_seen is written, for catch-up after a crash
PRUNE_EVERY = 3600.0
OUTPUT_FLUSH = 1.0  # a running job's output reaches the run log at most this late
# watchfiles polls its event queue every WATCH_STEP_MS and yields changes once the directory
# has been quiet that long: 100 ms keeps a reload well under a second and idle wake-ups at 10/s.
WATCH_STEP_MS = 100
WATCH_CHECK_MS = 30000  # and compare the file's stat after this long without events
LOST_GRACE = 2.0  # a survivor of a crashed daemon gets this long after SIGTERM
PRECISE_WAKE = 0.1  # a longer sleep ends early and is finished by a short one (see loop)
# A start that found no free file descriptor (or process slot) is tried again this soon,
# and as soon as a run ends; after SPAWN_RETRY_FOR of trying it is an `error`.
SPAWN_RETRY = 0.2
SPAWN_RETRY_FOR = 60.0
LINGER_CHECK = 0.2  # stopping: how often to look whether what TERM'd runs left has gone
NOT_STARTED = "not started: the daemon stopped before starting it"
# A write waits this long for another process's lock on the run log; then it is kept and
# retried by the loop (writequeue), so control requests and the watchdog never wait in
# SQLite's busy handler.
BUSY_TIMEOUT = 0.1
STOP_FLUSH = 10.0  # at a clean stop, kept writes are tried this long before they are given up
# Empty the -wal file this often: SQLite's own checkpoints, every 1,000 pages, let it grow
# to 4 MiB and never shrink it.
CHECKPOINT_EVERY = 60.0


class DaemonError(Exception):
    """The daemon cannot start; the message says why."""


@dataclass
class _Flags:
    stop: int = 0  # the signal that asked to stop
    reload: bool = False
    child: bool = False


@dataclass
class _Running:
    child: runner.Child
    job: JobSpec
    fd: int  # the output pipe as registered with the selector
    last_flush: float = 0.0


@dataclass
class _Pending:
    """A recorded run waiting for its process: the system was out of file descriptors."""

    start: Start
    run_id: int
    since: float  # monotonic


def boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return "unknown"


class Daemon:
    def __init__(self, jobs_path: str, db_path: str, *, system: bool = False,
                 keep_runs: int = 1000, keep_days: float = 90.0, keep_size: int = 256 << 20,
                 sendmail: str | None = None,
                 now: Callable[[], Now] = clock.now):
        self.jobs_path = os.path.abspath(jobs_path)
        self.db_path = os.path.abspath(db_path)
        self.system = system
        self.keep_runs, self.keep_days, self.keep_size = keep_runs, keep_days, keep_size
        self.sendmail = sendmail  # None: look in the usual places (mail.find_sendmail)
        self.now = now
        self.flags = _Flags()
        self.host = socket.gethostname()
        self.boot_id = boot_id()
        self.pid = os.getpid()
        self.running: dict[int, _Running] = {}  # run id -> process
        self.by_pid: dict[int, int] = {}  # pid -> run id
        # Runs whose shell has ended but which still owe a SIGKILL (Supervisor.lingering).
        self.ended: dict[int, runner.Child] = {}
        self.pending: deque[_Pending] = deque()  # recorded, not yet spawned, oldest first
        self._retry_at: float | None = None
        self._linger_check = 0.0
        self.store = ""  # this run log's mark in every job's environment (start())
        self._nofile: tuple[int, int] | None = None  # the fd limit jobs get
        # The start journal (paths.start_journal): each spawn is noted there before and
        # after, with its pid, so a daemon killed before the run log has the pid can tell
        # a run that started from one that never did.
        self._journal_fd: int | None = None
        self._journal_dirty = False
        self._unconfirmed: set[int] = set()  # started runs whose pid the run log lacks
        self.config_error: str | None = None
        self.version = RunningVersion("none", None, 0)  # which jobs file version runs
        self.jobs: JobsFile = JobsFile(self.jobs_path, ())
        self.selector: selectors.BaseSelector  # made in start(): --detach closes earlier fds
        self.notifier = notify.Notifier({})
        self._lock_fd: int | None = None
        self._wake_r = self._wake_w = -1
        self._watch_r = self._watch_w = -1
        self._watch_stop = threading.Event()
        self._last_heartbeat = self._last_prune = self._last_watchdog = 0.0
        self._last_checkpoint = 0.0
        self.writes = WriteQueue(lambda: self.now().mono)
        self._output_since_prune = 0  # bytes of final output written since the size was checked
        self._jobs_dirty = True  # rewrite the whole jobs table (start-up, reload)
        self._need_tick = True
        self._wake_at = 0.0
        self.control: control.Server | None = None

    # -- start-up ------------------------------------------------------------------------

    def start(self) -> None:
        """Everything before the loop; raises DaemonError with a message for the admin."""
        self.selector = selectors.DefaultSelector()
        self.notifier = notify.Notifier()
        self._raise_fd_limit()
        self._lock()
        self.store = paths.store_mark(self.db_path)
        try:
            self.log = RunLog.open(self.db_path, now=self.now().wall)
        except RunLogError as e:
            raise DaemonError(str(e)) from None
        now = self.now()
        self._recover_lost(now)
        self.jobs = self._first_version(now)
        history = self._history()
        self.supervisor = Supervisor(self.jobs, now, history)
        self.log.set_daemon(DaemonState(
            pid=self.pid, pid_start=runner.start_ticks(self.pid) or 0.0, started_at=now.wall,
            stopped_at=None, host=self.host, boot_id=self.boot_id, jobs_file=self.jobs_path,
            config_error=self.config_error, last_seen=now.wall))
        self._signals()
        self._watch()
        self.control = control.Server(paths.control_socket(self.db_path), self.selector, self._handle)
        self.log.prune(max_runs_per_job=self.keep_runs, max_age_s=self.keep_days * 86400, now=now.wall,
                       max_output_bytes=self.keep_size)
        self._checkpoint(now)
        self._last_prune = now.mono
        self.log.set_busy_timeout(BUSY_TIMEOUT)  # from here on the loop retries, never SQLite
        log.info("cronsup %s: %d jobs from %s, run log %s", self.pid, len(self.jobs.jobs),
                 self.jobs_path, self.db_path)
        self.notifier.send("READY=1", self._status_line())

    def check_can_start(self) -> None:
        """Raise DaemonError now if another daemon holds this run log (before detaching)."""
        self._lock()
        os.close(self._lock_fd)
        self._lock_fd = None

    def _lock(self) -> None:
        directory = os.path.dirname(self.db_path)
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
        except OSError as e:
            raise DaemonError(f"cannot create {directory}: {e.strerror}") from None
        # Everything the daemon creates lives here (lock, run log, -wal, -shm, socket): if
        # another user could write it, they could plant a symlink under one of those names
        # and have the daemon write through it, as root, wherever it points.
        try:
            trust.check_directory(directory, {0, os.geteuid()}, sticky_ok=False)
        except trust.Untrusted as e:
            raise DaemonError(f"refusing the state directory of {self.db_path}: {e}") from None
        for path in paths.state_files(self.db_path):
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue
            except OSError as e:
                raise DaemonError(f"cannot check {path}: {e.strerror}") from None
            kind = stat.S_IFSOCK if path == paths.control_socket(self.db_path) else stat.S_IFREG
            if stat.S_IFMT(st.st_mode) != kind or st.st_uid != os.geteuid():
                what = "a symbolic link" if stat.S_ISLNK(st.st_mode) else (
                    f"owned by uid {st.st_uid}" if st.st_uid != os.geteuid() else "not a file the daemon made")
                raise DaemonError(f"refusing {path}: it is {what}; cronsup follows no links and "
                                  "writes only its own files in its state directory (remove it)")
        lock = paths.daemon_lock(self.db_path)
        try:
            self._lock_fd = lockfile.take(lock, self.pid)
        except lockfile.LockError as e:
            raise DaemonError(str(e)) from None
        except lockfile.Held as e:
            raise DaemonError(f"another cronsup daemon (pid {e.pid or '?'}) is running on {self.db_path}; "
                              "stop it first, or give this one another --db") from None

    def _raise_fd_limit(self) -> None:
        """Soft RLIMIT_NOFILE up to the hard limit: each running job holds a pipe here.

        Jobs get the soft limit back (runner.spawn's nofile)."""
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        target = hard
        if hard == resource.RLIM_INFINITY:
            try:
                with open("/proc/sys/fs/nr_open") as f:
                    target = int(f.read())
            except (OSError, ValueError):
                return
        if soft == resource.RLIM_INFINITY or soft >= target:
            return
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (OSError, ValueError) as e:
            log.warning("cannot raise the open files limit from %d to %d: %s", soft, target, e)
            return
        self._nofile = (soft, hard)

    def _recover_lost(self, now: Now) -> None:
        """Runs left `running` by a daemon that crashed: kill survivors, mark them lost.

        Survivors are found by the pid in the run log or the start journal, and by the
        marks in their environment (runner.find_marked), which also finds processes that
        left the job's group or session. A run that, by the journal, never got a process
        is an `error`: not started.
        """
        journal = self._open_journal()
        lost = self.log.running_runs()
        self._recover(lost, journal, now)
        if lost:
            log.warning("marked %d runs left running by the previous daemon as lost or not "
                        "started", len(lost))
        self._truncate_journal()

    def _recover(self, lost: list[Run], journal: dict[int, tuple[int, int] | str] | None,
                 now: Now) -> None:
        marked = runner.find_marked(self.store)
        table = runner.process_table()
        survivors: dict[int, runner.Child] = {}
        for run in lost:
            if run.boot_id != self.boot_id:
                continue  # a process of another boot is gone
            pid, ticks = None, 0
            noted = journal.get(run.id) if journal else None
            if run.pid and run.pid_start is not None:
                pid, ticks = run.pid, int(run.pid_start)
            elif isinstance(noted, tuple):
                pid, ticks = noted
            procs = marked.get(run.id, {})
            root_alive = pid is not None and pid in table and table[pid].ticks == ticks
            if root_alive or procs:
                survivors[run.id] = runner.adopt(run.id, pid, ticks, procs)
        owed = self._owed_a_kill(marked, {run.id for run in lost})
        if not lost and not owed:
            return
        for child in [*survivors.values(), *owed]:
            runner.signal_tree(child, signal.SIGTERM, table=table)
        for _ in clock.poll(0.05, LOST_GRACE) if survivors else ():
            table = runner.process_table()
            if not any(runner.tree_alive(c, table=table) for c in survivors.values()):
                break
        table = runner.process_table()
        for child in [*survivors.values(), *owed]:
            if runner.tree_alive(child, table=table):
                runner.signal_tree(child, signal.SIGKILL, table=table)
        by_reason: dict[str, list[int]] = {}
        not_started = []
        for run in lost:
            noted = journal.get(run.id) if journal is not None else None
            reason = "the daemon stopped while it ran; its end is unknown"
            if run.id in survivors:
                group = survivors[run.id].pid
                reason += f" (its processes, group {group}, were killed when the daemon restarted)"
            elif run.pid is None and journal is not None and not isinstance(noted, tuple):
                if noted == "S":  # between the two notes: it may have run
                    reason = "the daemon stopped while starting it; whether it ran is unknown"
                else:
                    not_started.append(run.id)
                    continue
            by_reason.setdefault(reason, []).append(run.id)
        for reason, ids in by_reason.items():
            self.log.finish_runs_lost(ids, reason, now.wall)
        for run_id in not_started:
            self.log.finish_run(run_id, RunStatus.ERROR, finished_at=now.wall, reason=NOT_STARTED)

    def _owed_a_kill(self, marked: dict[int, dict[int, int]], running: set[int]) -> list[runner.Child]:
        """What finished runs left that the crashed daemon still owed a SIGKILL: processes
        of runs it had timed out or stopped (their shell ended of the SIGTERM, they ignored
        it, and the grace had not ended)."""
        owed = []
        for run_id, procs in marked.items():
            if run_id in running:
                continue
            run = self.log.run(run_id)
            if run is None or run.boot_id != self.boot_id:
                continue
            ours = run.status is RunStatus.TIMEOUT or (
                run.status is RunStatus.KILLED and (run.reason or "").startswith(
                    ("stopped with the daemon", "replaced by a newer run")))
            if ours:
                owed.append(runner.adopt(run_id, None, 0, procs))
        return owed

    def _open_journal(self) -> dict[int, tuple[int, int] | str] | None:
        """Open the start journal; what it says of each run id: (pid, start ticks) once
        started, "S" while being started, "N" not started. None: there was no journal (a
        first start, or one by an older version), so it cannot say."""
        path = paths.start_journal(self.db_path)
        flags = os.O_RDWR | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW
        existed = True
        try:
            try:
                fd = os.open(path, flags)
            except FileNotFoundError:
                existed = False
                fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as e:
            log.warning("cannot open %s (%s): a crash may leave runs marked lost that never "
                        "started", path, e.strerror)
            return None
        self._journal_fd = fd
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        self._journal_dirty = bool(chunks)
        if not existed:
            return None
        noted: dict[int, tuple[int, int] | str] = {}
        for line in b"".join(chunks).splitlines():
            parts = line.split()
            try:
                if parts[0] == b"P" and len(parts) == 4:
                    noted[int(parts[1])] = (int(parts[2]), int(parts[3]))
                elif parts[0] in (b"S", b"N") and len(parts) == 2:
                    noted[int(parts[1])] = parts[0].decode()
            except (ValueError, IndexError):
                continue  # a line cut short by a full disk
        return noted

    def _journal(self, line: bytes) -> None:
        if self._journal_fd is None:
            return
        try:
            os.write(self._journal_fd, line)
            self._journal_dirty = True
        except OSError as e:
            # Gone rather than incomplete: with no journal, the next start says "end
            # unknown" instead of wrongly "not started".
            log.warning("cannot write the start journal (%s); not using it any more", e.strerror)
            try:
                os.unlink(paths.start_journal(self.db_path))
            except OSError:
                pass
            os.close(self._journal_fd)
            self._journal_fd = None

    def _truncate_journal(self) -> None:
        """Empty the journal once the run log has the pid of every started run."""
        if self._journal_fd is None or not self._journal_dirty or self._unconfirmed:
            return
        try:
            os.ftruncate(self._journal_fd, 0)
            self._journal_dirty = False
        except OSError:
            pass

    def _history(self) -> History:
        previous = self.log.daemon()
        names = [job.name for job in self.jobs.jobs]
        h = History(
            last_seen=previous.last_seen if previous else None,
            paused=set(self.log.paused()),
            boot_time=psutil.boot_time(),
        )
        for name in names:
            if (t := self.log.last_scheduled(name)) is not None:
                h.last_scheduled[name] = t
            if (t := self.log.last_started(name)) is not None:
                h.last_started[name] = t
            if (t := self.log.last_success(name)) is not None:
                h.last_success[name] = t
            if self.log.has_run(name, "reboot", self.boot_id):
                h.reboot_done.add(name)
        return h

    def _signature(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.jobs_path)
        except OSError:
            return None
        return st.st_ino, st.st_size, st.st_mtime_ns

    def _load(self) -> JobsFile | None:
        """The jobs file if valid; otherwise None with config_error set (old version kept)."""
        self._loaded_signature = self._signature()
        try:
            # Opened once; as root, the file read is the file checked (owner, mode, directory).
            jobs = jobsfile.load(self.jobs_path, system=self.system, as_root=os.geteuid() == 0)
        except jobsfile.JobsfileErrors as e:
            self.config_error = e.summary
            for error in e.errors:
                log.error("%s", error)
            return None
        except jobsfile.JobsfileRefused as e:
            self.config_error = str(e)
        except OSError as e:
            self.config_error = f"{self.jobs_path}: cannot read: {e.strerror}"
        else:
            self.config_error = None
            for warning in jobs.warnings:
                log.warning("%s", warning)
            return jobs
        log.error("%s", self.config_error)
        return None

    def _first_version(self, now: Now) -> JobsFile:
        """The jobs to run at start-up: the file's, else the last good version stored in the
        run log (a typo at a restart must not stop every job), else none."""
        jobs = self._load()
        if jobs is not None:
            self._keep_version(jobs, now)
            return jobs
        good = self._write(self.log.good_jobs)
        stored = None
        if good is not None and good.path == self.jobs_path and good.system == self.system:
            try:
                stored = jobsfile.parse_bytes(good.source, self.jobs_path, system=self.system)
            except jobsfile.JobsfileErrors as e:  # written by another version of cronsup
                log.error("the last good version of %s stored in the run log no longer loads: %s",
                          self.jobs_path, e.summary)
        if stored is None:
            log.error("running no jobs: %s has errors and the run log holds no good version of it",
                      self.jobs_path)
            self._set_version(RunningVersion("none", None, 0))
            return JobsFile(self.jobs_path, ())
        log.warning("running the last good version of %s, loaded %s and stored in the run log "
                    "(%d jobs); the file's errors are above", self.jobs_path,
                    iso(good.loaded_at), len(stored.jobs))
        self._set_version(RunningVersion("run log", good.loaded_at, len(stored.jobs)))
        return stored

    def _keep_version(self, jobs: JobsFile, now: Now) -> None:
        """Store a good version in the run log, for a restart that finds the file broken."""
        self._write(self.log.set_good_jobs, GoodJobs(self.jobs_path, self.system, now.wall, jobs.source))
        self._set_version(RunningVersion("file", now.wall, len(jobs.jobs)))

    def _set_version(self, version: RunningVersion) -> None:
        self.version = version
        self._write(self.log.set_running_version, version)

    def _signals(self) -> None:
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        # Jobs must not inherit ignored signals (nohup, a shell's `&`): exec keeps SIG_IGN.
        # SIGPIPE and SIGXFSZ, which Python ignores itself, are reset in each child.
        for sig in signal.valid_signals():
            if sig not in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGKILL, signal.SIGSTOP) \
                    and signal.getsignal(sig) == signal.SIG_IGN:
                signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_reload)
        signal.signal(signal.SIGCHLD, self._on_child)

    def _on_stop(self, signum, frame) -> None:
        self.flags.stop = signum

    def _on_reload(self, signum, frame) -> None:
        self.flags.reload = True

    def _on_child(self, signum, frame) -> None:
        self.flags.child = True

    def _watch(self) -> None:
        self._watch_r, self._watch_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.selector.register(self._watch_r, selectors.EVENT_READ, "watch")
        thread = threading.Thread(target=self._watcher, name="cronsup-watch", daemon=True)
        thread.start()

    def _watcher(self) -> None:
        directory = os.path.dirname(self.jobs_path)
        try:
            import watchfiles  # in the try: out of fds at start-up, even the import can fail

            # Every wake-up also makes the loop compare the file's stat: other files in the
            # directory changing, or WATCH_CHECK_MS of quiet. That catches an edit made
            # before inotify was set up, and files on NFS, where inotify sees nothing.
            for changes in watchfiles.watch(directory, watch_filter=None, stop_event=self._watch_stop,
                                            debounce=1000, step=WATCH_STEP_MS, recursive=False,
                                            raise_interrupt=False, rust_timeout=WATCH_CHECK_MS,
                                            yield_on_timeout=True):
                ours = any(os.path.abspath(path) == self.jobs_path for _, path in changes)
                try:
                    os.write(self._watch_w, b"w" if ours else b"s")
                except OSError:
                    pass
        except Exception as e:  # noqa: BLE001 - the watcher thread must not die silently
            log.warning("cannot watch %s for changes (%s); reload with SIGHUP or `cronsup "
                        "reload`", directory, e)

    # -- the loop ------------------------------------------------------------------------

    def run(self) -> int:
        try:
            self.start()
        except RunLogError as e:
            self.close()
            raise DaemonError(str(e)) from None
        try:
            self.loop()
        finally:
            self.close()
        return 0

    def loop(self) -> None:
        while True:
            now = self.now()
            actions: list[Action] = []
            if self.flags.stop and not self.supervisor.stopping:
                log.info("stopping on %s: %d running jobs get SIGTERM", signal.Signals(self.flags.stop).name,
                         len(self.running))
                self.notifier.send("STOPPING=1", f"STATUS=stopping: {len(self.running)} running jobs get "
                                   "SIGTERM, then SIGKILL after their kill_grace")
                actions += self.supervisor.stop(now)
                self._drop_pending(now)
            reaped = False
            if self.flags.child:
                self.flags.child = False
                actions += self._reap(now)
                self._need_tick = reaped = True
            if self.pending and (reaped or now.mono >= (self._retry_at or 0.0)):
                self._spawn_pending(now)  # runs that ended have freed file descriptors
            if self.flags.reload:
                self.flags.reload = False
                self.reload(now)
                self._need_tick = True
            # Output arrives in 64 KiB reads; only a deadline or a change of state (an exit,
            # a reload, a request, a signal) can make the supervisor decide anything new.
            if self._need_tick or actions or now.mono >= self._wake_at or self.supervisor.stopping:
                self._need_tick = False
                more, self._wake_at = self.supervisor.tick(now)
                actions += more
            self.execute(actions, now)
            if actions:  # starts bring timeouts, finished runs queued starts: decide the wake-up again
                self._wake_at = self.supervisor.wake(now)
            wake = self._wake_at
            if self.control is not None:
                expiry = self.control.expire(now.mono)
                if expiry is not None:
                    wake = min(wake, expiry)
            if self.supervisor.stopping and not self.running and self._leftovers_gone(now):
                return
            self._housekeeping(now)
            timeout = max(0.0, wake - self.now().mono)
            if self._need_tick:
                timeout = 0.0
            if timeout > PRECISE_WAKE:
                # epoll_wait returns up to 0.1% of its timeout late (the kernel's slack for
                # poll timers, 0.5% when niced): 5 ms after a 5 s sleep, 60 ms after a minute.
                # Wake a little early instead; the last stretch, under PRECISE_WAKE, is slept
                # with a slack of microseconds (and epoll's 1 ms rounding).
                timeout -= timeout / 100 + 0.002
            if self.running:
                timeout = min(timeout, OUTPUT_FLUSH)
            if self.pending and self._retry_at is not None:
                timeout = min(timeout, max(0.0, self._retry_at - self.now().mono))
            if self.supervisor.stopping and self.ended:
                timeout = min(timeout, LINGER_CHECK)
            if self.notifier.watchdog_interval:
                timeout = min(timeout, self.notifier.watchdog_interval)
            if self.writes:
                timeout = min(timeout, max(0.0, self.writes.retry_at - self.now().mono))
            for key, _ in self.selector.select(timeout):
                self._event(key.data)

    def _leftovers_gone(self, now: Now) -> bool:
        """Stopping with no run left: whether what TERM'd runs left behind has gone too.

        What is still there gets its SIGKILL at its grace end (Supervisor.lingering) before
        the daemon exits.
        """
        if not self.ended:
            return True
        if now.mono - self._linger_check < LINGER_CHECK:
            return False
        self._linger_check = now.mono
        marked = runner.find_marked(self.store)
        table = runner.process_table()
        for run_id, child in list(self.ended.items()):
            if not runner.tree_alive(child, marked.get(run_id), table=table):
                del self.ended[run_id]
                self.supervisor.forget_lingering(run_id)
        return not self.ended

    def _event(self, data) -> None:
        if data == "wake":
            _drain(self._wake_r)
        elif data == "watch":
            if b"w" in _drain(self._watch_r) or self._signature() != self._loaded_signature:
                self.flags.reload = True
        elif isinstance(data, _Running):
            if not runner.read_output(data.child):
                self.selector.unregister(data.fd)
        elif callable(data):
            data()

    def _housekeeping(self, now: Now) -> None:
        if self.notifier.watchdog_interval and now.mono - self._last_watchdog >= self.notifier.watchdog_interval:
            self._last_watchdog = now.mono
            self.notifier.send("WATCHDOG=1")
        if self.writes.due(now.mono):
            self._retry_writes(now)
        for entry in self.running.values():
            if entry.child.output.changed and now.mono - entry.last_flush >= OUTPUT_FLUSH:
                self._flush(entry, now)
        if self._jobs_dirty:
            self._jobs_dirty = False
            self.supervisor.changed.clear()
            self._write_jobs()
        elif self.supervisor.changed and self.writes:
            self.supervisor.changed.clear()
            self._write_jobs()  # kept as one write that a newer one replaces
        elif self.supervisor.changed:
            names, self.supervisor.changed = self.supervisor.changed, set()
            names = [n for n in names if n in self.supervisor.jobs]
            self._write(self.log.update_next_runs, {n: self.supervisor.next_run(n) for n in names})
            self._write(self.log.update_retries, {n: self.supervisor.retry_at(n) for n in names})
        if now.mono - self._last_heartbeat >= HEARTBEAT:
            self._last_heartbeat = now.mono
            self._write(self.log.update_daemon, last_seen=now.wall)
            self.notifier.send(self._status_line())
        if self.writes:
            return  # pruning and checkpoints wait until the kept writes are written
        if now.mono - self._last_prune >= PRUNE_EVERY:
            self._last_prune = now.mono
            self._output_since_prune = 0
            self._try(self.log.prune, max_runs_per_job=self.keep_runs, max_age_s=self.keep_days * 86400,
                      now=now.wall, max_output_bytes=self.keep_size)
            self._checkpoint(now)
        elif self._output_since_prune >= self.keep_size // 8:
            # A chatty job can write far more than --keep-size in the hour between prunes.
            self._output_since_prune = 0
            if self._try(self.log.prune_output, self.keep_size):
                self._checkpoint(now)
        if now.mono - self._last_checkpoint >= CHECKPOINT_EVERY:
            self._checkpoint(now)

    def _write(self, method, *args, **kwargs):
        """A run-log write; one the run log refuses (locked, disk full) is kept and retried
        in order until it succeeds (see writequeue). The method's result, or None if kept."""
        if method.__name__ == "finish_run":
            self._output_since_prune += output_size(method, args, kwargs)
        return self.writes.write(method, *args, **kwargs)

    def _try(self, method, *args, **kwargs):
        """A read, or a write the loop does again anyway (prune, checkpoint): None if refused."""
        try:
            return method(*args, **kwargs)
        except RunLogError as e:
            log.error("%s", e)
            return None

    def _retry_writes(self, now: Now) -> bool:
        """Try the kept writes; True when none is left."""
        if self.writes.retry() is not None:
            self._checkpoint(now)  # the -wal file may have filled the disk: give the space back
            return True
        if self.writes.refusal is not None and self.writes.refusal.full:
            try:  # a checkpoint can give back the -wal file's space
                self.log.checkpoint()
            except RunLogError:
                pass
        return False

    def _keep_missed(self, rows: list[NewRun], e: RunLogError, now: Now) -> None:
        """Fires not started because their row could not be recorded get a `missed` row later."""
        self.writes.refused(e)
        reason = f"not started: the run log refused its row at its time ({e})"
        self.writes.keep(self.log.insert_runs, [replace(r, status=RunStatus.MISSED, reason=reason,
                                                        started_at=None, finished_at=now.wall) for r in rows],
                         host=self.host, boot_id=self.boot_id)

    def _checkpoint(self, now: Now) -> None:
        self._last_checkpoint = now.mono
        self._try(self.log.checkpoint)

    def _flush_at_stop(self) -> None:
        """At a clean stop: try the kept writes for up to STOP_FLUSH, then say what is lost."""
        if not self.writes:
            return
        deadline = self.now().mono + STOP_FLUSH
        log.warning("stopping with %d run-log writes kept; trying them for up to %gs",
                    len(self.writes), STOP_FLUSH)
        while not self._retry_writes(self.now()) and self.now().mono < deadline:
            clock.sleep(self.writes.retry_every)
        self.writes.lost()

    # -- actions -------------------------------------------------------------------------

    def execute(self, actions: list[Action], now: Now) -> dict[int, int]:
        """Kills first, then records, then every start in one transaction and one burst.

        Returns the run id given to each Record and Start, by id() of the action.
        """
        ids: dict[int, int] = {}
        kills = [a for a in actions if isinstance(a, Kill)
                 and (a.run_id in self.running or a.run_id in self.ended)]
        if kills:
            self._kill(kills)
        records = [a for a in actions if isinstance(a, Record)]
        if records:
            got = self._write(self.log.insert_runs, [
                NewRun(r.job.name, r.fire.trigger, r.fire.attempt, r.fire.scheduled_for,
                       status=r.status, reason=r.reason, finished_at=now.wall) for r in records
            ], host=self.host, boot_id=self.boot_id) or []
            for r, run_id in zip(records, got):
                if run_id is not None:
                    ids[id(r)] = run_id
                    log.info("%s[%d]: %s (%s)", r.job.name, run_id, r.status, r.reason)
        starts = [a for a in actions if isinstance(a, Start)]
        if starts:
            ids.update(self._start(starts, now))
        return ids

    def _kill(self, kills: list[Kill]) -> None:
        # One scan for all: what left the tree (setsid, a double fork) still has the mark.
        marked = runner.find_marked(self.store)
        try:
            table = runner.process_table()
        except OSError:
            table = None
        for kill in kills:
            entry = self.running.get(kill.run_id)
            child = entry.child if entry is not None else self.ended.pop(kill.run_id)
            try:
                runner.signal_tree(child, kill.sig, marked.get(kill.run_id), table=table)
            except OSError as e:  # no fd left to read /proc: at least the group, while ours
                log.error("run %d: cannot look for its processes (%s); signalling its group",
                          kill.run_id, e.strerror)
                if entry is not None:
                    try:
                        runner.killpg(child.pid, kill.sig)
                    except OSError:
                        pass

    def _start(self, starts: list[Start], now: Now) -> dict[int, int]:
        rows = [NewRun(s.job.name, s.fire.trigger, s.fire.attempt, s.fire.scheduled_for,
                       started_at=now.wall) for s in starts]
        try:
            ids = self.log.insert_runs(rows, host=self.host, boot_id=self.boot_id)
        except RunLogError as e:
            # Nothing runs without a record: these starts are given up, loudly.
            log.error("not starting %s: cannot record the runs: %s",
                      ", ".join(s.job.name for s in starts), e)
            for s in starts:
                self.supervisor.not_started(s)
            self._keep_missed(rows, e, now)
            return {}
        given: dict[int, int] = {}
        for start, run_id in zip(starts, ids):
            if run_id is None:
                log.info("%s: a run for %s exists already; not running it again", start.job.name,
                         start.fire.scheduled_for)
                self.supervisor.not_started(start)
                continue
            given[id(start)] = run_id
            self.pending.append(_Pending(start, run_id, now.mono))
        self._spawn_pending(now)
        return given

    def _spawn_pending(self, now: Now) -> None:
        """Start the recorded runs that wait for a process, oldest first, in one burst.

        Out of file descriptors (or processes), the rest wait: tried again after
        SPAWN_RETRY or when a run ends, and only after SPAWN_RETRY_FOR is a run an error.
        """
        started, failed = [], []
        short = None
        while self.pending:
            pending = self.pending[0]
            start, run_id = pending.start, pending.run_id
            self._journal(b"S %d\n" % run_id)
            try:
                child = runner.spawn(start.job, run_id, store=self.store, nofile=self._nofile)
            except runner.SpawnError as e:
                self._journal(b"N %d\n" % run_id)
                if e.transient and now.mono - pending.since < SPAWN_RETRY_FOR:
                    short = e.reason
                    break
                self.pending.popleft()
                reason = e.reason
                if e.transient:
                    reason += f" (still after trying for {SPAWN_RETRY_FOR:.0f}s)"
                failed.append((start, run_id, reason))
                continue
            self.pending.popleft()
            self._journal(b"P %d %d %d\n" % (run_id, child.pid, child.start_ticks))
            self._unconfirmed.add(run_id)
            entry = _Running(child=child, job=start.job, fd=child.fd, last_flush=now.mono)
            self.running[run_id] = entry
            self.by_pid[child.pid] = run_id
            self.selector.register(child.fd, selectors.EVENT_READ, entry)
            self.supervisor.started(start, run_id, now)
            started.append((run_id, child.pid, float(child.start_ticks), child.started_at))
        if short is not None:
            if self._retry_at is None:
                log.warning("%d starts wait: %s; trying again as runs end", len(self.pending), short)
            self._retry_at = now.mono + SPAWN_RETRY
        elif self._retry_at is not None:
            self._retry_at = None
            log.info("the starts that waited have started")
        if started and self._write(self.log.mark_started_many, started) is not None:
            self._unconfirmed.difference_update(run_id for run_id, *_ in started)
        for start, run_id, reason in failed:
            self.supervisor.error(start)
            self._write(self.log.finish_run, run_id, RunStatus.ERROR, finished_at=now.wall, reason=reason)
            log.error("%s[%d]: cannot start: %s", start.job.name, run_id, reason)
        for run_id, pid, _, _ in started:
            log.info("%s[%d]: started, pid %d", self.running[run_id].job.name, run_id, pid)
        self._truncate_journal()

    def _drop_pending(self, now: Now) -> None:
        """Stopping: the runs still waiting for a process will not get one."""
        while self.pending:
            pending = self.pending.popleft()
            self.supervisor.not_started(pending.start)
            self._write(self.log.finish_run, pending.run_id, RunStatus.ERROR, finished_at=now.wall,
                        reason=NOT_STARTED)
        self._retry_at = None

    def _reap(self, now: Now) -> list[Action]:
        exits = runner.reap_any() if self.pid == 1 else runner.reap_exited(self.by_pid)
        actions: list[Action] = []
        # Linux charges a child, at exec, with the peak size of the process that started it:
        # a job's peak at or below the daemon's own is the daemon's, so it is not recorded.
        own_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 if exits else 0
        for ex in exits:
            run_id = self.by_pid.pop(ex.pid, None)
            if run_id is None:
                continue  # an orphan reaped as PID 1
            entry = self.running.pop(run_id)
            self._unconfirmed.discard(run_id)
            if entry.child.fd is not None:
                self.selector.unregister(entry.fd)
                runner.close_output(entry.child)
            data, truncated = entry.child.output.snapshot()
            status, reason, follow = self.supervisor.finished(run_id, ex.exit_code, ex.signal, now)
            if run_id in self.supervisor.lingering:
                self.ended[run_id] = entry.child  # for the SIGKILL still owed to its leftovers
            self._write(self.log.finish_run, run_id, status, finished_at=now.wall,
                        exit_code=ex.exit_code, signal=ex.signal, reason=reason,
                        cpu_s=ex.cpu_s, max_rss=ex.max_rss if ex.max_rss > own_peak else None,
                        output=(data, truncated))
            took = now.wall - entry.child.started_at
            log.info("%s[%d]: %s after %.1fs%s", entry.job.name, run_id, status, took,
                     f" ({reason})" if reason else "")
            if entry.job.mailto and data:
                mail.send(entry.job, f"{status}" + (f": {reason}" if reason else ""), data,
                          host=self.host, user=entry.job.user or runner.user_name(os.geteuid()),
                          sendmail=self.sendmail)
            actions += follow
        return actions

    def _flush(self, entry: _Running, now: Now) -> None:
        data, truncated = entry.child.output.snapshot()
        entry.child.output.changed = False
        entry.last_flush = now.mono
        self._write(self.log.save_output, entry.child.run_id, data, truncated)

    # -- control requests ----------------------------------------------------------------

    def _handle(self, request: dict) -> dict:
        """One request from `cronsup run|reload|pause|resume`: names a job, never a command.

        An error answer carries "kind" ("unknown_job", "stopping", "not_started") so the
        command can pick its exit status.
        """
        self._need_tick = True  # a request may start, pause or reload: decide again
        now = self.now()
        op = request["op"]
        if op == "ping":
            return {"ok": True, "pid": self.pid}
        if op == "reload":
            reloaded = self.reload(now)
            return {"ok": True, "reloaded": reloaded, "config_error": self.config_error,
                    "jobs": len(self.jobs.jobs), "jobs_file": self.jobs_path,
                    "running_from": self.version.origin}
        name = request["job"]
        if name not in self.supervisor.jobs:
            hint = suggest.did_you_mean(name, self.supervisor.jobs)
            return {"ok": False, "kind": "unknown_job",
                    "error": f"no job named {name!r} in {self.jobs_path}{hint}"}
        if op in ("pause", "resume"):
            was_paused = name in self.supervisor.paused
            if op == "pause":
                self.supervisor.pause(name)
            else:
                self.supervisor.resume(name)
            if was_paused != (op == "pause"):
                self._write(self.log.set_paused, name, op == "pause", now.wall)
                self._need_tick = True
                log.info("%s: %sd", name, op)
            since = (self._try(self.log.paused) or {}).get(name) if op == "pause" else None
            return {"ok": True, "changed": was_paused != (op == "pause"), "paused_since": since,
                    "next_run": self.supervisor.next_run(name)}
        if self.supervisor.stopping:
            return {"ok": False, "kind": "stopping", "error": "the daemon is stopping"}
        newest = self._try(self.log.runs, name, limit=1) or []
        after_id = newest[0].id if newest else 0
        actions = self.supervisor.run_now(name, now)
        ids = self.execute(actions, now)
        for action in actions:
            if not isinstance(action, (Start, Record)):
                continue  # a Kill of the run being replaced (overlap = "replace")
            if action.job.name == name and action.fire.trigger is Trigger.MANUAL and id(action) in ids:
                status = RunStatus.RUNNING if isinstance(action, Start) else action.status
                run_id = ids[id(action)]
                run = self.running.get(run_id)
                reason = action.reason if isinstance(action, Record) else None
                waiting = any(p.run_id == run_id for p in self.pending)  # for a free fd
                if isinstance(action, Start) and run is None and not waiting:
                    status = RunStatus.ERROR
                    found = self._try(self.log.run, run_id)
                    reason = found.reason if found else None
                return {"ok": True, "run_id": run_id, "status": str(status), "reason": reason,
                        "pid": run.child.pid if run else None, "after_id": after_id}
        if self.supervisor.jobs[name].queued is not None:
            policy = self.supervisor.jobs[name].spec.overlap
            why = "the running run is stopped" if policy is Overlap.REPLACE else "the running run ends"
            return {"ok": True, "run_id": None, "status": "queued", "after_id": after_id,
                    "reason": f"to start when {why} (overlap = \"{policy}\")"}
        return {"ok": False, "kind": "not_started",
                "error": f"{name} was not started (the run log refused the record; see the daemon's log)"}

    # -- reload --------------------------------------------------------------------------

    def reload(self, now: Now) -> bool:
        """Reread the jobs file; a bad one keeps the last good version running."""
        before = self.config_error
        jobs = self._load()
        self._write(self.log.update_daemon, config_error=self.config_error)
        if jobs is None:
            if self.config_error != before:
                log.error("keeping the last good version of %s (the errors are above)", self.jobs_path)
            self.notifier.send(self._status_line())
            return False
        self.jobs = jobs
        self._keep_version(jobs, now)
        self.supervisor.reload(jobs, now)
        self._jobs_dirty = True
        log.info("reloaded %s: %d jobs", self.jobs_path, len(jobs.jobs))
        self.notifier.send(self._status_line())
        return True

    def _write_jobs(self) -> None:
        nxt = self.supervisor.next_runs()
        retry = {j.name: r for j in self.jobs.jobs if (r := self.supervisor.retry_at(j.name))}
        self._write(self.log.set_jobs, [
            JobRow(name=j.name, schedule=j.schedule.text, command=j.command,
                   description=j.description, next_run=nxt.get(j.name), enabled=j.enabled,
                   line=j.line, retry_at=(r := retry.get(j.name)) and r.at,
                   retry_attempt=r and r.attempt, retry_attempts=r and r.attempts)
            for j in self.jobs.jobs])

    def _status_line(self) -> str:
        """What `systemctl status` shows on its Status: line, e.g. "STATUS=12 jobs, 1 running"."""
        count = len(self.jobs.jobs)
        line = f"STATUS={count} job{'' if count == 1 else 's'}, {len(self.running)} running"
        if self.config_error:  # the admin's first question, answered where they look first
            error = " ".join(self.config_error.split())
            line += f"; jobs file error: {error[:300]}"
        return line

    # -- the end -------------------------------------------------------------------------

    def close(self) -> None:
        now = self.now()
        self._watch_stop.set()
        if self.control is not None:
            self.control.close()
        if hasattr(self, "log"):
            self._write(self.log.update_daemon, stopped_at=now.wall, last_seen=now.wall)
            self._flush_at_stop()
            if not self.writes:
                self._try(self.log.checkpoint)
            self.log.close()
        signal.set_wakeup_fd(-1)
        for fd in (self._wake_r, self._wake_w, self._watch_r, self._watch_w):
            if fd >= 0:
                os.close(fd)
        if hasattr(self, "selector"):
            self.selector.close()
        self.notifier.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
        if self._journal_fd is not None:
            os.close(self._journal_fd)
        log.info("stopped")


def _drain(fd: int) -> bytes:
    data = b""
    try:
        while chunk := os.read(fd, 4096):
            data += chunk
    except BlockingIOError:
        pass
    return data
