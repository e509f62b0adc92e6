"""The daemon: the only impure loop. Signals, file watching, the run log, processes.

One thread decides (this loop); a watcher thread only pokes a pipe when the jobs file's
directory changes. Signal handlers only set flags (and Python's wakeup fd wakes the loop).
"""

from __future__ import annotations

import difflib
import errno
import fcntl
import logging
import os
import resource
import selectors
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import psutil

from cronsup import clock, control, jobsfile, mail, notify, paths, runner
from cronsup.model import JobsFile, JobSpec, Overlap, RunStatus, Trigger
from cronsup.runlog import DaemonState, JobRow, NewRun, RunLog, RunLogError
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


def boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return "unknown"


class Daemon:
    def __init__(self, jobs_path: str, db_path: str, *, system: bool = False,
                 keep_runs: int = 1000, keep_days: float = 90.0, keep_size: int = 256 << 20,
                 now: Callable[[], Now] = clock.now):
        self.jobs_path = os.path.abspath(jobs_path)
        self.db_path = os.path.abspath(db_path)
        self.system = system
        self.keep_runs, self.keep_days, self.keep_size = keep_runs, keep_days, keep_size
        self.now = now
        self.flags = _Flags()
        self.host = socket.gethostname()
        self.boot_id = boot_id()
        self.pid = os.getpid()
        self.running: dict[int, _Running] = {}  # run id -> process
        self.by_pid: dict[int, int] = {}  # pid -> run id
        self.config_error: str | None = None
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
        self._lock()
        try:
            self.log = RunLog.open(self.db_path, now=self.now().wall)
        except RunLogError as e:
            raise DaemonError(str(e)) from None
        now = self.now()
        self._recover_lost(now)
        self.jobs = self._load() or self.jobs
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
            fd = os.open(paths.daemon_lock(self.db_path), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as e:
            raise DaemonError(f"cannot create {directory}: {e.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                raise
            other = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise DaemonError(f"another cronsup daemon (pid {other}) is running on {self.db_path}; "
                              "stop it first, or give this one another --db") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{self.pid}\n".encode())
        self._lock_fd = fd

    def _recover_lost(self, now: Now) -> None:
        """Runs left `running` by a daemon that crashed: kill survivors, mark them lost."""
        lost = self.log.running_runs()
        if not lost:
            return
        survivors = []
        for run in lost:
            if run.boot_id == self.boot_id and run.pid and run.pid_start is not None:
                if runner.start_ticks(run.pid) == int(run.pid_start):
                    survivors.append(run)
        for run in survivors:
            _killpg(run.pid, signal.SIGTERM)
        deadline = time.monotonic() + LOST_GRACE
        while survivors and time.monotonic() < deadline and any(
                runner.start_ticks(r.pid) == int(r.pid_start) for r in survivors):
            time.sleep(0.05)
        for run in survivors:
            if runner.start_ticks(run.pid) == int(run.pid_start):
                _killpg(run.pid, signal.SIGKILL)
        by_reason: dict[str, list[int]] = {}
        for run in lost:
            reason = "the daemon stopped while it ran; its end is unknown"
            if run in survivors:
                reason += f" (its processes, group {run.pid}, were killed when the daemon restarted)"
            by_reason.setdefault(reason, []).append(run.id)
        for reason, ids in by_reason.items():
            self.log.finish_runs_lost(ids, reason, now.wall)
        log.warning("marked %d runs left running by the previous daemon as lost", len(lost))

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
            self.config_error = jobsfile.refusal(self.jobs_path)
            if self.config_error is None:
                jobs = jobsfile.load(self.jobs_path, system=self.system)
        except jobsfile.JobsfileErrors as e:
            self.config_error = e.summary
            for error in e.errors:
                log.error("%s", error)
            return None
        except OSError as e:
            self.config_error = f"{self.jobs_path}: cannot read: {e.strerror}"
        if self.config_error is not None:
            log.error("%s", self.config_error)
            return None
        return jobs

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
        import watchfiles

        directory = os.path.dirname(self.jobs_path)
        try:
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
            if self.flags.child:
                self.flags.child = False
                actions += self._reap(now)
                self._need_tick = True
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
            if self.supervisor.stopping and not self.running:
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
            if self.notifier.watchdog_interval:
                timeout = min(timeout, self.notifier.watchdog_interval)
            if self.writes:
                timeout = min(timeout, max(0.0, self.writes.retry_at - self.now().mono))
            for key, _ in self.selector.select(timeout):
                self._event(key.data)

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
            self._write(self.log.update_next_runs, {n: self.supervisor.next_run(n) for n in names
                                                    if n in self.supervisor.jobs})
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
        for action in actions:
            if isinstance(action, Kill) and action.run_id in self.running:
                runner.signal_tree(self.running[action.run_id].child, action.sig)
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
        started, failed = [], []
        for start, run_id in zip(starts, ids):
            if run_id is None:
                log.info("%s: a run for %s exists already; not running it again", start.job.name,
                         start.fire.scheduled_for)
                self.supervisor.not_started(start)
                continue
            given[id(start)] = run_id
            try:
                child = runner.spawn(start.job, run_id)
            except runner.SpawnError as e:
                failed.append((start, run_id, e.reason))
                continue
            entry = _Running(child=child, job=start.job, fd=child.fd, last_flush=now.mono)
            self.running[run_id] = entry
            self.by_pid[child.pid] = run_id
            self.selector.register(child.fd, selectors.EVENT_READ, entry)
            self.supervisor.started(start, run_id, now)
            started.append((run_id, child.pid, float(child.start_ticks), child.started_at))
        self._write(self.log.mark_started_many, started)
        for start, run_id, reason in failed:
            self.supervisor.error(start)
            self._write(self.log.finish_run, run_id, RunStatus.ERROR, finished_at=now.wall, reason=reason)
            log.error("%s[%d]: cannot start: %s", start.job.name, run_id, reason)
        for run_id, pid, _, _ in started:
            log.info("%s[%d]: started, pid %d", self.running[run_id].job.name, run_id, pid)
        return given

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
            if entry.child.fd is not None:
                self.selector.unregister(entry.fd)
                runner.close_output(entry.child)
            data, truncated = entry.child.output.snapshot()
            status, reason, follow = self.supervisor.finished(run_id, ex.exit_code, ex.signal, now)
            self._write(self.log.finish_run, run_id, status, finished_at=now.wall,
                        exit_code=ex.exit_code, signal=ex.signal, reason=reason,
                        cpu_s=ex.cpu_s, max_rss=ex.max_rss if ex.max_rss > own_peak else None,
                        output=(data, truncated))
            took = now.wall - entry.child.started_at
            log.info("%s[%d]: %s after %.1fs%s", entry.job.name, run_id, status, took,
                     f" ({reason})" if reason else "")
            if entry.job.mailto and data:
                mail.send(entry.job, f"{status}" + (f": {reason}" if reason else ""), data,
                          host=self.host, user=entry.job.user or _user_name())
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
                    "jobs": len(self.jobs.jobs), "jobs_file": self.jobs_path}
        name = request["job"]
        if name not in self.supervisor.jobs:
            close = difflib.get_close_matches(name, list(self.supervisor.jobs), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
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
                if isinstance(action, Start) and run is None:
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
        self.supervisor.reload(jobs, now)
        self._jobs_dirty = True
        log.info("reloaded %s: %d jobs", self.jobs_path, len(jobs.jobs))
        self.notifier.send(self._status_line())
        return True

    def _write_jobs(self) -> None:
        nxt = self.supervisor.next_runs()
        self._write(self.log.set_jobs, [
            JobRow(name=j.name, schedule=j.schedule.text, command=j.command,
                   description=j.description, next_run=nxt.get(j.name), enabled=j.enabled,
                   line=j.line)
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
        log.info("stopped")


def _drain(fd: int) -> bytes:
    data = b""
    try:
        while chunk := os.read(fd, 4096):
            data += chunk
    except BlockingIOError:
        pass
    return data


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _user_name() -> str:
    import pwd

    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())
