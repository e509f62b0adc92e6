"""Start-up recovery: the start journal, and the runs a crashed daemon left `running`."""

from __future__ import annotations

import logging
import os
import signal

from cronsup import clock, runner
from cronsup.model import Now, Outcome, RunStatus
from cronsup.store import Run, RunStore

log = logging.getLogger("cronsup")

LOST_GRACE = 2.0  # a survivor of a crashed daemon gets this long after SIGTERM
NOT_STARTED = "not started: the daemon stopped before starting it"

Noted = dict[int, tuple[int, int] | str]


class StartJournal:
    """The start journal (paths.start_journal): each spawn is noted there before and after,
    with its pid, so a daemon killed before the run log has the pid can tell a run that
    started from one that never did."""

    def __init__(self, path: str):
        self.path = path
        self.fd: int | None = None
        self.dirty = False

    def open(self) -> Noted | None:
        """Open the start journal; what it says of each run id: (pid, start ticks) once
        started, "S" while being started, "N" not started. None: there was no journal (a
        first start, or one by an older version), so it cannot say."""
        path = self.path
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
        self.fd = fd
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        self.dirty = bool(chunks)
        if not existed:
            return None
        noted: Noted = {}
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

    def note(self, line: bytes) -> None:
        if self.fd is None:
            return
        try:
            os.write(self.fd, line)
            self.dirty = True
        except OSError as e:
            # Gone rather than incomplete: with no journal, the next start says "end
            # unknown" instead of wrongly "not started".
            log.warning("cannot write the start journal (%s); not using it any more", e.strerror)
            try:
                os.unlink(self.path)
            except OSError:
                pass
            os.close(self.fd)
            self.fd = None

    def truncate(self, unconfirmed: set[int]) -> None:
        """Empty the journal once the run log has the pid of every started run."""
        if self.fd is None or not self.dirty or unconfirmed:
            return
        try:
            os.ftruncate(self.fd, 0)
            self.dirty = False
        except OSError:
            pass

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def recover_lost(runlog: RunStore, store: str, boot_id: str, journal: StartJournal,
                 now: Now) -> list[tuple[Run, Outcome]]:
    """Runs left `running` by a daemon that crashed: kill survivors, mark them lost.

    Survivors are found by the pid in the run log or the start journal, and by the
    marks in their environment (runner.find_marked), which also finds processes that
    left the job's group or session. A run that, by the journal, never got a process
    is an `error`: not started. Returns each such run with its outcome.
    """
    noted = journal.open()
    lost = runlog.running_runs()
    ended = _recover(runlog, store, boot_id, lost, noted, now)
    if lost:
        log.warning("marked %d runs left running by the previous daemon as lost or not "
                    "started", len(lost))
    journal.truncate(set())
    return ended


def _recover(runlog: RunStore, store: str, boot_id: str, lost: list[Run], journal: Noted | None,
             now: Now) -> list[tuple[Run, Outcome]]:
    marked = runner.find_marked(store)
    table = runner.process_table()
    survivors: dict[int, runner.Child] = {}
    for run in lost:
        if run.boot_id != boot_id:
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
    owed = _owed_a_kill(runlog, boot_id, marked, {run.id for run in lost})
    if not lost and not owed:
        return []
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
    by_reason: dict[str, list[Run]] = {}
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
                not_started.append(run)
                continue
        by_reason.setdefault(reason, []).append(run)
    ended = []
    for reason, runs in by_reason.items():
        runlog.finish_runs_lost([run.id for run in runs], reason, now.wall)
        ended += [(run, Outcome(RunStatus.LOST, reason)) for run in runs]
    for run in not_started:
        runlog.finish_run(run.id, RunStatus.ERROR, finished_at=now.wall, reason=NOT_STARTED)
        ended.append((run, Outcome(RunStatus.ERROR, NOT_STARTED)))
    return ended


def _owed_a_kill(runlog: RunStore, boot_id: str, marked: dict[int, dict[int, int]],
                 running: set[int]) -> list[runner.Child]:
    """What finished runs left that the crashed daemon still owed a SIGKILL: processes
    of runs it had timed out or stopped (their shell ended of the SIGTERM, they ignored
    it, and the grace had not ended)."""
    owed = []
    for run_id, procs in marked.items():
        if run_id in running:
            continue
        run = runlog.run(run_id)
        if run is None or run.boot_id != boot_id:
            continue
        ours = run.status is RunStatus.TIMEOUT or (
            run.status is RunStatus.KILLED and (run.reason or "").startswith(
                ("stopped with the daemon", "replaced by a newer run")))
        if ours:
            owed.append(runner.adopt(run_id, None, 0, procs))
    return owed
