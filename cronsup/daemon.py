"""The daemon: start-up, signals, file watching and the one impure loop, wiring the rest.

One thread decides (this loop); a watcher thread only pokes a pipe when the jobs file's
directory changes, and receivers (events.py) run in their own threads. Signal handlers only
set flags (and Python's wakeup fd wakes the loop). What the loop does to processes, the run
log and the jobs file lives in processes.py, upkeep.py and versions.py.
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
from dataclasses import dataclass, field

import psutil

from cronsup import alerts, answers, backfilling, clock, control, events, lockfile, notify, paths, recovery, runner, trust
from cronsup.cronlive import CronLive
from cronsup.report import CRON_KV
from cronsup.events import Receivers
from cronsup.model import JobsFile
from cronsup.cluster import Cluster
from cronsup.processes import Processes, _Pending, _Running
from cronsup.statusserve import StatusService
from cronsup.store import DaemonState, RunLogError, RunningVersion, open_store
from cronsup.supervisor import Action, Fire, History, Now, Supervisor
from cronsup.upkeep import OUTPUT_FLUSH, Upkeep
from cronsup.versions import Versions
from cronsup.writequeue import WriteQueue

log = logging.getLogger("cronsup")

# watchfiles polls its event queue every WATCH_STEP_MS and yields changes once the directory
# has been quiet that long: 100 ms keeps a reload well under a second and idle wake-ups at 10/s.
WATCH_STEP_MS = 100
WATCH_CHECK_MS = 30000  # and compare the file's stat after this long without events
PRECISE_WAKE = 0.1  # a longer sleep ends early and is finished by a short one (see loop)
LINGER_CHECK = 0.2  # stopping: how often to look whether what TERM'd runs left has gone
# A write waits this long for another process's lock on the run log; then it is kept and
# retried by the loop (writequeue), so control requests and the watchdog never wait in
# SQLite's busy handler.
BUSY_TIMEOUT = 0.1
INTERNAL_ERRORS = "internal_errors"  # the run log's kv key `status` reads the count from
RECEIVER_GRACE = 1.0  # at a stop, receivers get this long to finish what is queued
ERROR_PAUSE = 0.05  # after an internal error the loop waits this long: no busy loop on a bug


class DaemonError(Exception):
    """The daemon cannot start; the message says why."""


@dataclass
class _Flags:
    stop: int = 0  # the signal that asked to stop
    reload: bool = False
    child: bool = False
    cron: bool = False  # cron's files changed (daemon --cron)
    ignored: set[int] = field(default_factory=set)  # signals that mean nothing here


def boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return "unknown"


class Daemon(Processes, Upkeep, Versions, CronLive, Cluster):
    """The loop and its wiring; what it does to runs, the run log and the jobs file is in
    the mixins (processes, upkeep, versions, cronlive)."""

    def __init__(self, jobs_path: str, db_path: str, *, system: bool = False,
                 keep_runs: int = 1000, keep_days: float = 90.0, keep_size: int = 256 << 20,
                 sendmail: str | None = None, state_dir: str | None = None,
                 now: Callable[[], Now] = clock.now, receivers: Receivers | None = None,
                 metrics: tuple[str, int] | None = None, cron_root: str | None = None,
                 node: str | None = None):
        self.jobs_path = os.path.abspath(jobs_path)
        self.cron_root = os.path.abspath(cron_root) if cron_root else None  # None: no --cron
        self.db_path = db_path if paths.is_url(db_path) else os.path.abspath(db_path)
        self.state_dir = state_dir  # lock, socket, journal (None: beside the run log)
        self.system = system
        self.keep_runs, self.keep_days, self.keep_size = keep_runs, keep_days, keep_size
        self.sendmail = sendmail  # None: look in the usual places (mail.find_sendmail)
        self.now = now
        # Told of every start and outcome; mail first. Tests pass their own.
        self.alerts: alerts.Sender | None = None  # the outbox's sender (not with a test's receivers)
        if receivers is None:
            self.alerts = alerts.Sender(self.db_path, lambda: self.jobs, lambda: self.log.sibling())
            receivers = Receivers([events.MailReceiver(user=runner.user_name(os.geteuid()), sendmail=sendmail)])
            receivers.add(alerts.AlertReceiver(self.alerts), alerts.LANE_SIZE)
        self.receivers = receivers
        self.spawn = runner.spawn  # tests may swap the spawner
        self._old_handlers: dict[int, object] = {}
        self.failing = events.Failing(self._earlier_status)
        self.internal_errors = 0  # exceptions caught at the loop's iteration boundary
        self.doing: str | None = None  # the job being handled, for an internal error's log line
        self.flags = _Flags()
        # --node (CRONSUP_NODE): this daemon's name among the hosts sharing a PostgreSQL run log.
        self.host = node or (os.environ.get("CRONSUP_NODE") if paths.is_url(db_path) else None) \
            or socket.gethostname()
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
        self.journal = recovery.StartJournal(paths.start_journal(self.db_path, self.state_dir))
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
        self.statuses = StatusService(self.db_path, self.jobs_path, self.state_dir, self.host)
        self.metrics_listen = metrics  # (host, port) of --metrics, or None
        self.metrics = None  # its metrics_server.MetricsServer once bound

    # -- start-up ------------------------------------------------------------------------

    def start(self) -> None:
        """Everything before the loop; raises DaemonError with a message for the admin."""
        self.selector = selectors.DefaultSelector()
        self.notifier = notify.Notifier()
        self._raise_fd_limit()
        self._lock()
        self._bind_metrics()
        self.store = paths.store_mark(self.db_path, self.state_dir)
        try:
            self.log = open_store(self.db_path, now=self.now().wall, node=self.host)
            self._cluster_start()
        except RunLogError as e:
            raise DaemonError(str(e)) from None
        now = self.now()
        lost = recovery.recover_lost(self.log, self.store, self.boot_id, self.journal, now)
        self.jobs = self._first_version(now)
        history = self._history()
        self._cron_reboot(history)
        self.supervisor = Supervisor(self.jobs, now, history)
        backfilling.resume(self, now)  # a backfill the last daemon left going goes on
        self.log.set_daemon(DaemonState(
            pid=self.pid, pid_start=runner.start_ticks(self.pid) or 0.0, started_at=now.wall,
            stopped_at=None, host=self.host, boot_id=self.boot_id, jobs_file=self.jobs_path,
            config_error=self.config_error, last_seen=now.wall))
        self._write(self.log.set_kv, INTERNAL_ERRORS, None)
        if self.cron_root is None and self._try(self.log.get_kv, CRON_KV):
            self._publish_cron()  # a daemon started without --cron shows no cron files
        self.failing.seed({job: run.status for job, run in (self._try(self.log.last_runs) or {}).items()})
        specs = {job.name: job for job in self.jobs.jobs}
        for run, outcome in lost:
            self._emit_outcome(specs.get(run.job), run.job, run.id, outcome, Fire(run.trigger, run.attempt,
                               run.scheduled_for), now)
        self._signals()
        self._watch()
        self.control = control.Server(paths.control_socket(self.db_path, self.state_dir), self.selector, self._handle)
        self._prune(now)
        if self.alerts is not None:
            self.alerts.start()  # alerts left in the outbox by the last daemon go out now
        self.log.set_busy_timeout(BUSY_TIMEOUT)  # from here on the loop retries, never SQLite
        if clock.test_offset():
            log.warning("CRONSUP_TEST_CLOCK_OFFSET=%g moves this daemon's wall clock: for tests only",
                        clock.test_offset())
        log.info("cronsup %s: %d jobs from %s, run log %s", self.pid, len(self.jobs.jobs),
                 self.jobs_path, paths.shown(self.db_path))
        if self.metrics is not None:
            self.metrics.start()  # after the migration: its reader needs the current schema
        self.notifier.send("READY=1", self._status_line())

    def _bind_metrics(self) -> None:
        """Listen for --metrics now, so a port in use stops the start with a clear message."""
        if self.metrics_listen is None:
            return
        from cronsup import metrics_server

        probe = metrics_server.LoopProbe()
        try:
            self.metrics = metrics_server.MetricsServer(
                *self.metrics_listen, self.db_path, probe,
                stopping=lambda: hasattr(self, "supervisor") and self.supervisor.stopping,
                next_wake=lambda: self._wake_at)
        except metrics_server.ListenError as e:
            probe.close()
            raise DaemonError(str(e)) from None
        self.selector.register(probe.read_fd, selectors.EVENT_READ, probe.drain)

    def check_can_start(self) -> None:
        """Raise DaemonError now if another daemon holds this run log (before detaching)."""
        self._lock()
        os.close(self._lock_fd)
        self._lock_fd = None

    def _lock(self) -> None:
        dirs = [paths.state_dir(self.db_path, self.state_dir)]
        if not paths.is_url(self.db_path):
            dirs.insert(0, os.path.dirname(self.db_path))
        for directory in dict.fromkeys(dirs):
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
                raise DaemonError(f"refusing the state directory of {paths.shown(self.db_path)}: {e}") from None
        for path in paths.state_files(self.db_path, self.state_dir):
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue
            except OSError as e:
                raise DaemonError(f"cannot check {path}: {e.strerror}") from None
            kind = stat.S_IFSOCK if path == paths.control_socket(self.db_path, self.state_dir) else stat.S_IFREG
            if stat.S_IFMT(st.st_mode) != kind or st.st_uid != os.geteuid():
                what = "a symbolic link" if stat.S_ISLNK(st.st_mode) else (
                    f"owned by uid {st.st_uid}" if st.st_uid != os.geteuid() else "not a file the daemon made")
                raise DaemonError(f"refusing {path}: it is {what}; cronsup follows no links and "
                                  "writes only its own files in its state directory (remove it)")
        lock = paths.daemon_lock(self.db_path, self.state_dir)
        try:
            self._lock_fd = lockfile.take(lock, self.pid)
        except lockfile.LockError as e:
            raise DaemonError(str(e)) from None
        except lockfile.Held as e:
            other = ("give this one its own --node and --state-dir" if paths.is_url(self.db_path)
                     else "give this one another --db")
            raise DaemonError(f"another cronsup daemon (pid {e.pid or '?'}) is running on "
                              f"{paths.shown(self.db_path)}; stop it first, or {other}") from None

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

    def _journal(self, line: bytes) -> None:
        self.journal.note(line)

    def _truncate_journal(self) -> None:
        self.journal.truncate(self._unconfirmed)

    def _history(self) -> History:
        previous = self.log.daemon()
        names = [job.name for job in self.jobs.jobs]
        h = History(
            last_seen=previous.last_seen if previous else None,
            paused=set(self.log.paused()),
            boot_time=psutil.boot_time(),
            anchored=self.cluster,
        )
        stored = self.log.history(names, self.boot_id)  # a few queries, whatever the jobs
        h.last_scheduled, h.last_started = stored.last_scheduled, stored.last_started
        h.last_success, h.reboot_done = stored.last_success, stored.reboot_done
        return h

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
        for sig, handler in ((signal.SIGTERM, self._on_stop), (signal.SIGINT, self._on_stop),
                             (signal.SIGHUP, self._on_reload), (signal.SIGCHLD, self._on_child),
                             # Admins send USR1/USR2 to make daemons reopen their logs; by
                             # default they would kill this one and orphan its jobs.
                             (signal.SIGUSR1, self._on_ignored), (signal.SIGUSR2, self._on_ignored)):
            self._old_handlers[sig] = signal.signal(sig, handler)

    def _on_stop(self, signum, frame) -> None:
        self.flags.stop = signum

    def _on_reload(self, signum, frame) -> None:
        self.flags.reload = True

    def _on_child(self, signum, frame) -> None:
        self.flags.child = True

    def _on_ignored(self, signum, frame) -> None:
        self.flags.ignored.add(signum)

    def _watch(self) -> None:
        self._watch_r, self._watch_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.selector.register(self._watch_r, selectors.EVENT_READ, "watch")
        thread = threading.Thread(target=self._watcher, name="cronsup-watch", daemon=True)
        thread.start()

    def _watch_dirs(self) -> list[str]:
        """The jobs file's directory, and with --cron those of cron's files that exist now."""
        jobs_dir = os.path.dirname(self.jobs_path)
        cron = self._cron_watch_dirs()
        if self.cron_root is not None and not os.path.isdir(jobs_dir):
            return cron  # --cron needs no jobs file; its directory may be made later
        return list(dict.fromkeys([jobs_dir, *cron]))

    def _watcher(self) -> None:
        directory = os.path.dirname(self.jobs_path)
        try:
            # In the try: out of fds at start-up, even the import can fail. RustNotify is what
            # watchfiles.watch wraps; used directly, the loop can be told when watching begins.
            from watchfiles._rust_notify import RustNotify

            while not self._watch_stop.is_set():
                directories = self._watch_dirs()
                if not directories:  # --cron, and none of the directories exists yet
                    self._watch_stop.wait(WATCH_CHECK_MS / 1000)
                    self._poke(b"s")
                    continue
                with RustNotify(directories, False, False, 300, False, False) as notify:
                    # Watching from here: a change made before (while the daemon started, or
                    # while a new directory was added) is found by the loop's stat compare.
                    self._poke(b"s")
                    while not self._watch_stop.is_set():
                        # Every wake-up also makes the loop compare the file's stat: other
                        # files in the directory changing, or WATCH_CHECK_MS of quiet. That
                        # also catches files on NFS, where inotify sees nothing.
                        raw = notify.watch(1000, WATCH_STEP_MS, WATCH_CHECK_MS, self._watch_stop)
                        if raw == "stop":
                            return
                        changes = raw if isinstance(raw, set) else set()
                        ours = any(os.path.abspath(path) == self.jobs_path for _, path in changes)
                        self._poke(b"w" if ours else b"s")
                        if self._watch_dirs() != directories:
                            break  # /etc/cron.d or the spool was made (or removed): watch it too
        except Exception as e:  # noqa: BLE001 - the watcher thread must not die silently
            log.warning("cannot watch %s for changes (%s); reload with SIGHUP or `cronsup "
                        "reload`", directory, e)

    def _poke(self, what: bytes) -> None:
        try:
            os.write(self._watch_w, what)
        except OSError:
            pass

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
        while self.step():
            pass

    def step(self, max_wait: float | None = None) -> bool:
        """One pass of the loop, then a wait for what comes next; False once stopped.

        This is the iteration boundary: an exception in a pass is logged, with the job when
        known, and counted (`status` shows the count), and the loop goes on.
        """
        try:
            timeout = self._pass()
        except Exception:  # noqa: BLE001 - one bug must not stop every job on the host
            self._internal_error()
            timeout = ERROR_PAUSE
        if timeout is None:
            return False
        if max_wait is not None:
            timeout = min(timeout, max_wait)
        try:
            for key, _ in self.selector.select(timeout):
                self._event(key.data)
        except Exception:  # noqa: BLE001 - as above
            self._internal_error()
        return True

    def _internal_error(self) -> None:
        self.internal_errors += 1
        where = f" while handling job {self.doing}" if self.doing else ""
        log.exception("internal error%s (%d since start); the daemon goes on", where,
                      self.internal_errors)
        self.doing = None
        try:
            self._write(self.log.set_kv, INTERNAL_ERRORS, str(self.internal_errors))
        except Exception:  # noqa: BLE001 - the count is a courtesy; the loop goes on
            log.exception("cannot store the internal error count")

    def _pass(self) -> float | None:
        """Decide and act on what happened; the time to wait for more, None once stopped."""
        now = self.now()
        actions = self._happened(now)
        self.execute(actions, now)
        if actions:  # starts bring timeouts, finished runs queued starts: decide the wake-up again
            self._wake_at = self.supervisor.wake(now)
        if self.supervisor.stopping and not self.running and self._leftovers_gone(now):
            return None
        self._housekeeping(now)
        if self.metrics is not None:
            self.metrics.probe.answer()  # /health and scrapes wait for a whole pass
        return self._timeout(now)

    def _happened(self, now: Now) -> list[Action]:
        """The actions for what happened since the last pass: a stop, exits, a reload, time."""
        actions: list[Action] = []
        while self.flags.ignored:
            log.info("ignoring %s (the log file is reopened by itself after rotation; SIGHUP "
                     "rereads the jobs file)", signal.Signals(self.flags.ignored.pop()).name)
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
            self.flags.reload = False  # a good jobs file rescans cron's files too
            self.reload(now)
            self._need_tick = True
        if self.flags.cron:
            self.flags.cron = False
            if self._cron_changed():
                self._reload_cron(now)
                self._need_tick = True
        # Output arrives in 64 KiB reads; only a deadline or a change of state (an exit,
        # a reload, a request, a signal) can make the supervisor decide anything new.
        if self._need_tick or actions or now.mono >= self._wake_at or self.supervisor.stopping:
            self._need_tick = False
            more, self._wake_at = self.supervisor.tick(now)
            actions += more
        return actions

    def _timeout(self, now: Now) -> float:
        """How long the loop may wait for a file descriptor before the next pass."""
        wake = self._wake_at
        if self.control is not None:
            expiry = self.control.expire(now.mono)
            if expiry is not None:
                wake = min(wake, expiry)
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
        if self.cluster:  # heartbeats, takeover, run requests
            timeout = min(timeout, max(0.0, min(self._cluster_due, self._requests_due) - self.now().mono))
        return timeout

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
            if self._cron_changed():
                self.flags.cron = True
        elif isinstance(data, _Running):
            if not runner.read_output(data.child):
                self.selector.unregister(data.fd)
        elif callable(data):
            data()

    # -- control requests ----------------------------------------------------------------

    def _handle(self, request: dict) -> dict:
        return answers.answer(self, request, self.now())

    # -- the end -------------------------------------------------------------------------

    def close(self) -> None:
        now = self.now()
        self._watch_stop.set()
        if self.metrics is not None:
            self.metrics.close()
            self.selector.unregister(self.metrics.probe.read_fd)
            self.metrics.probe.close()
            self.metrics = None
        if self.control is not None:
            self.control.close()
        self.statuses.close(RECEIVER_GRACE)
        if hasattr(self, "log"):
            self._write(self.log.update_daemon, stopped_at=now.wall, last_seen=now.wall)
            self._flush_at_stop()
            if not self.writes:
                self._try(self.log.checkpoint)
            self.log.close()
        signal.set_wakeup_fd(-1)
        for sig, handler in self._old_handlers.items():  # for a daemon built in-process (tests)
            signal.signal(sig, handler)
        self.receivers.close(RECEIVER_GRACE)
        if self.alerts is not None:
            self.alerts.close(RECEIVER_GRACE)
        for fd in (self._wake_r, self._wake_w, self._watch_r, self._watch_w):
            if fd >= 0:
                os.close(fd)
        if hasattr(self, "selector"):
            self.selector.close()
        self.notifier.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
        self.journal.close()
        log.info("stopped")


def _drain(fd: int) -> bytes:
    data = b""
    try:
        while chunk := os.read(fd, 4096):
            data += chunk
    except BlockingIOError:
        pass
    return data
