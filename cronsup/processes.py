"""The daemon's runs as processes: execute actions, record and spawn starts, kill, reap, emit events."""

from __future__ import annotations

import logging
import os
import resource
import selectors
from dataclasses import dataclass

from cronsup import backfilling, events, params, runner, schedule
from cronsup.events import Event
from cronsup.model import JobSpec, Outcome, RunStatus
from cronsup.recovery import NOT_STARTED
from cronsup.store import NewRun, RunLogError
from cronsup.supervisor import Action, EndBackfill, Fire, Kill, Now, Record, Start

log = logging.getLogger("cronsup")

# A start that found no free file descriptor (or process slot) is tried again this soon,
# and as soon as a run ends; after SPAWN_RETRY_FOR of trying it is an `error`.
SPAWN_RETRY = 0.2
SPAWN_RETRY_FOR = 60.0


@dataclass
class _Running:
    child: runner.Child
    job: JobSpec
    fd: int  # the output pipe as registered with the selector
    last_flush: float = 0.0
    fire: Fire | None = None  # what it runs for (for its events)


@dataclass
class _Pending:
    """A recorded run waiting for its process: the system was out of file descriptors."""

    start: Start
    run_id: int
    since: float  # monotonic


def _run_env(start: Start, run_id: int) -> dict[str, str]:
    """The run's parameters and CRONSUP_* variables (SPEC section 8)."""
    fire = start.fire
    return params.run_environment(start.job.name, run_id, fire.attempt, str(fire.trigger),
                                  fire.scheduled_for, schedule.load_zone(start.job.timezone),
                                  fire.params)


class Processes:
    """Mixed into Daemon: executing actions, spawning, reaping, and telling the receivers."""

    def execute(self, actions: list[Action], now: Now) -> dict[int, int]:
        """Kills first, then records, then every start in one transaction and one burst.

        Returns the run id given to each Record and Start, by id() of the action.
        """
        ids: dict[int, int] = {}
        actions = self._cluster_actions(actions, now)  # several hosts: what this one may claim
        kills = [a for a in actions if isinstance(a, Kill)
                 and (a.run_id in self.running or a.run_id in self.ended)]
        if kills:
            self._kill(kills)
        records = [a for a in actions if isinstance(a, Record)]
        if records:
            got = self._write(self.log.insert_runs, [
                self._cluster_row(r.job, NewRun(r.job.name, r.fire.trigger, r.fire.attempt, r.fire.scheduled_for,
                                                status=r.status, reason=r.reason, finished_at=now.wall,
                                                params=r.fire.params))
                for r in records
            ], host=self.host, boot_id=self.boot_id) or []
            for r, run_id in zip(records, got):
                if run_id is not None:
                    ids[id(r)] = run_id
                    log.info("%s[%d]: %s (%s)", r.job.name, run_id, r.status, r.reason)
            for r in records:  # kept for later, a refused row is still a skip or a miss now
                self._emit_outcome(r.job, r.job.name, ids.get(id(r)), r.outcome, r.fire, now)
        starts = [a for a in actions if isinstance(a, Start)]
        for part in self._claim_parts(starts):  # one part, but for several hosts
            ids.update(self._start(part, now))
        ends = [a for a in actions if isinstance(a, EndBackfill)]
        if ends:
            backfilling.ended(self, ends, now)
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
                        os.killpg(child.pid, kill.sig)
                    except OSError:
                        pass

    def _start(self, starts: list[Start], now: Now) -> dict[int, int]:
        rows = [self._cluster_row(s.job, NewRun(s.job.name, s.fire.trigger, s.fire.attempt,
                                                s.fire.scheduled_for, started_at=now.wall,
                                                params=s.fire.params)) for s in starts]
        try:
            ids = self.log.insert_runs(rows, host=self.host, boot_id=self.boot_id)
        except RunLogError as e:
            # Nothing runs without a record: these starts are given up, loudly.
            log.error("not starting %s: cannot record the runs: %s",
                      ", ".join(s.job.name for s in starts), e)
            for s in starts:
                self.supervisor.not_started(s)
            self._keep_missed(starts, rows, e, now)
            return {}
        given: dict[int, int] = {}
        for start, run_id in zip(starts, ids):
            if run_id is None:
                # Several hosts: another one claimed it, the usual case, said at debug level.
                (log.debug if self.cluster else log.info)(
                    "%s: a run for %s exists already; not running it again", start.job.name,
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
            self.doing = start.job.name
            self._journal(b"S %d\n" % run_id)
            try:
                child = self.spawn(start.job, run_id, store=self.store, nofile=self._nofile,
                                   env=_run_env(start, run_id))
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
            if self.cluster:  # the database's clock, as every other time of the run
                child.started_at += self._db_offset
            self._journal(b"P %d %d %d\n" % (run_id, child.pid, child.start_ticks))
            self._unconfirmed.add(run_id)
            entry = _Running(child=child, job=start.job, fd=child.fd, last_flush=now.mono, fire=start.fire)
            self.running[run_id] = entry
            self.by_pid[child.pid] = run_id
            self.selector.register(child.fd, selectors.EVENT_READ, entry)
            # Its own instant, not the burst's: the 1,000th start of a burst must not lose
            # the burst's length from its timeout.
            self.supervisor.started(start, run_id, self.now())
            started.append((run_id, child.pid, float(child.start_ticks), child.started_at))
        self.doing = None
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
            self._emit_outcome(start.job, start.job.name, run_id, Outcome(RunStatus.ERROR, reason), start.fire, now)
        for run_id, pid, _, _ in started:
            log.info("%s[%d]: started, pid %d", self.running[run_id].job.name, run_id, pid)
            self._emit_start(self.running[run_id], now)
        self._truncate_journal()

    def _drop_pending(self, now: Now) -> None:
        """Stopping: the runs still waiting for a process will not get one."""
        while self.pending:
            pending = self.pending.popleft()
            self.supervisor.not_started(pending.start)
            self._write(self.log.finish_run, pending.run_id, RunStatus.ERROR, finished_at=now.wall,
                        reason=NOT_STARTED)
            self._emit_outcome(pending.start.job, pending.start.job.name, pending.run_id,
                               Outcome(RunStatus.ERROR, NOT_STARTED), pending.start.fire, now)
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
            self.doing = entry.job.name
            outcome = self.supervisor.finished(run_id, ex.exit_code, ex.signal, now)
            status, reason = outcome.status, outcome.reason
            if run_id in self.supervisor.lingering:
                self.ended[run_id] = entry.child  # for the SIGKILL still owed to its leftovers
            self._write(self.log.finish_run, run_id, status, finished_at=now.wall,
                        exit_code=ex.exit_code, signal=ex.signal, reason=reason,
                        cpu_s=ex.cpu_s, max_rss=ex.max_rss if ex.max_rss > own_peak else None,
                        output=(data, truncated))
            took = now.wall - entry.child.started_at
            log.info("%s[%d]: %s after %.1fs%s", entry.job.name, run_id, status, took,
                     f" ({reason})" if reason else "")
            self._emit_outcome(entry.job, entry.job.name, run_id, outcome, entry.fire, now, data, truncated)
            actions += outcome.follow
        self.doing = None
        return actions

    # -- events ----------------------------------------------------------------------------

    def _emit_start(self, entry: _Running, now: Now) -> None:
        fire = entry.fire
        self.receivers.emit(Event(events.START, entry.job.name, entry.job, entry.child.run_id, None,
                                  self.host, now.wall, fire.trigger, fire.attempt, fire.scheduled_for))

    def _emit_outcome(self, spec: JobSpec | None, job: str, run_id: int | None, outcome: Outcome,
                      fire: Fire, now: Now, output: bytes = b"", truncated: bool = False) -> None:
        """The one event an outcome makes (success, failure, recovery, retry, skipped, missed)."""
        name = self.failing.name(job, run_id, outcome)
        next_run = outcome.retry_at if outcome.retry_at is not None else (
            self.supervisor.next_run(job) if job in self.supervisor.jobs else None)
        self.receivers.emit(Event(name, job, spec, run_id, outcome, self.host, now.wall, fire.trigger,
                                  fire.attempt, fire.scheduled_for, output, truncated, next_run))

    def _earlier_status(self, job: str, run_id: int) -> RunStatus | None:
        """The final status of the job's last fire that ended before run `run_id` (for
        `recovery`): earlier attempts of this run's own fire were retried, so they are not final."""
        this = self._try(self.log.run, run_id)
        for run in self._try(self.log.runs, job, limit=50, before_id=run_id) or []:
            if this is not None and run.scheduled_for == this.scheduled_for:
                continue
            if run.status not in (RunStatus.RUNNING, RunStatus.SKIPPED, RunStatus.MISSED):
                return run.status
        return None

    def _flush(self, entry: _Running, now: Now) -> None:
        data, truncated = entry.child.output.snapshot()
        entry.child.output.changed = False
        entry.last_flush = now.mono
        self._write(self.log.save_output, entry.child.run_id, data, truncated)
