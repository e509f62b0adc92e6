"""Policy: what is due, overlap, retries, `after` chains, catch-up, clock jumps, timeouts.

Pure: `tick(now)` returns actions and the next wake-up; no processes, no I/O, no clock. The
daemon executes the actions and reports back with `started`, `start_failed` and `finished`.
Times come in as `Now(wall, mono)`: the wall clock decides what is due, the monotonic clock
measures timeouts, grace periods and delays, and comparing the two reveals clock jumps.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import random
import signal
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from cronsup import backfill, schedule
from cronsup.model import (AfterJobs, Catchup, Cron, Every, JobsFile, JobSpec, Now, Outcome,
                           Overlap, Reboot, RunStatus, Trigger)
from cronsup.units import format_duration as _duration, signal_name as _signame

log = logging.getLogger("cronsup")

# A daemon (re)started within this long after a fire still runs it as a normal start;
# older fires are catch-up. The unique run key keeps a fire that did run from running again.
STARTUP_GRACE = 60.0
# Wall and monotonic time may drift apart by this much before it counts as a clock jump.
JUMP_THRESHOLD = 5.0
# Debian cron: a forward jump under 3 hours runs the fixed-time jobs it skipped, once.
SMALL_JUMP = 3 * 3600.0
# At most this many fires of a job are caught up, or recorded as missed one row each, per
# start or stall; older ones share one summary row (a clock 100 days ahead is 144,000 minutes).
CATCHUP_CAP = 100
# A timeout enforced this much after its deadline says that the daemon was stalled.
STALL_NOTICE = 1.0
# Sleep at most this long, so a wall-clock jump during a long sleep is noticed.
MAX_SLEEP = 60.0


@dataclass(frozen=True)
class Fire:
    trigger: Trigger
    attempt: int
    scheduled_for: float
    # `cronsup run JOB --env K=V`: the run's parameters, (key, value) in the order given;
    # a retry carries them on.
    params: tuple[tuple[str, str], ...] = ()
    backfill: int = 0  # the backfill this run is a slot (or a slot's retry) of; 0: none
    # The attempt this fire's series began at: a time a backfill runs again begins after the
    # attempts it had, and still gets its `retries`.
    first: int = 1


@dataclass(frozen=True)
class Start:
    """Record a run (committed before anything runs), then start its process."""

    job: JobSpec
    fire: Fire


@dataclass(frozen=True)
class Record:
    """Record a run that did not start: skipped (overlap) or missed (daemon down)."""

    job: JobSpec
    fire: Fire
    status: RunStatus
    reason: str

    @property
    def outcome(self) -> Outcome:
        return Outcome(self.status, self.reason)


@dataclass(frozen=True)
class Kill:
    """Send `sig` to the run's whole process tree."""

    run_id: int
    sig: int


@dataclass(frozen=True)
class EndBackfill:
    """A backfill has nothing left to start or wait for ("done"), or its job is gone."""

    backfill_id: int
    job: str
    state: str  # "done" or "cancelled"
    reason: str = ""


Action = Start | Record | Kill | EndBackfill


class PendingRetry(NamedTuple):
    """A retry waiting to start, as `status` shows it: "retry 2 of 3 at 17:52:10"."""

    at: float  # wall
    attempt: int
    attempts: int  # retries + 1


@dataclass
class History:
    """What the run log remembers, for decisions at start-up."""

    last_seen: float | None = None  # the previous daemon's last heartbeat
    last_scheduled: dict[str, float] = field(default_factory=dict)
    last_success: dict[str, float] = field(default_factory=dict)
    last_started: dict[str, float] = field(default_factory=dict)
    paused: set[str] = field(default_factory=set)
    reboot_done: set[str] = field(default_factory=set)  # @reboot jobs already run this boot
    boot_time: float = 0.0
    # Several hosts share the schedule: @every fires fall on multiples of the interval since
    # the epoch, so every host computes the same scheduled times (the claim's key).
    anchored: bool = False


def _anchored_delay(step: float, wall: float) -> float:
    """Seconds from `wall` to the next multiple of `step` after it."""
    return step - (wall % step) if wall % step else step


@dataclass(frozen=True)
class _Late:
    """Fires that came due in an interval: the latest CATCHUP_CAP, and how many came before."""

    fires: list[float]  # oldest first
    more: int = 0  # earlier fires not in `fires`
    first: float | None = None  # the earliest of those


@dataclass
class _Run:
    """A run the supervisor has asked for and not yet seen end."""

    job: JobSpec
    fire: Fire
    run_id: int | None = None  # None until the daemon reports it started
    started_mono: float | None = None
    deadline: float | None = None  # timeout, monotonic
    ending: tuple[RunStatus, str] | None = None  # why we signalled it
    kill_at: float | None = None  # SIGKILL after the grace, monotonic


@dataclass
class _Job:
    spec: JobSpec
    zone: dt.tzinfo | None = None
    cursor: float = 0.0  # wall: fires at or before this are handled
    next_fire: float | None = None  # wall, for cron jobs
    every_due: float | None = None  # mono, for @every jobs
    queued: Fire | None = None
    pending: list[tuple[float, Fire]] = field(default_factory=list)  # (mono due, fire): retries, jitter
    catchup: deque[Fire] = field(default_factory=deque)


def _same_job(a: JobSpec, b: JobSpec) -> bool:
    return a == b  # `line` is not compared: moving a job in the file does not change it


class Supervisor:
    def __init__(self, jobs: JobsFile, now: Now, history: History | None = None,
                 rng: random.Random | None = None):
        self.history = history or History()
        self.rng = rng or random.Random()
        self.jobs: dict[str, _Job] = {}
        self.runs: dict[str, list[_Run]] = {}  # job name -> its runs, oldest first
        self.by_id: dict[int, _Run] = {}
        # Runs whose shell ended during a kill grace: the SIGKILL at the grace end is still
        # owed to what it left behind (children that ignore SIGTERM). run id -> mono time.
        self.lingering: dict[int, float] = {}
        self.paused: set[str] = set(self.history.paused)
        self.last_success = dict(self.history.last_success)
        self.last_started = dict(self.history.last_started)
        self.stopping = False
        self._last = now
        self._expect = now.wall  # when the daemon was last asked to tick again (wall)
        self._initial: list[Action] = []
        self.changed: set[str] = set()  # jobs whose next run moved since the daemon last asked
        self.backfills: dict[str, backfill.Queue] = {}  # job name -> its backfill (one at a time)
        for spec in jobs.jobs:
            self.jobs[spec.name] = self._new_job(spec, now, startup=True)
        self._index_dependents()
        self._initial = self._startup_actions(now)

    def _index_dependents(self) -> None:
        """job name -> the @after jobs that wait for it, so a success costs O(dependents)."""
        self.dependents: dict[str, list[str]] = {}
        for job in self.jobs.values():
            if isinstance(job.spec.schedule, AfterJobs):
                for dep in job.spec.after:
                    self.dependents.setdefault(dep, []).append(job.spec.name)

    # -- jobs ------------------------------------------------------------------------------

    def _new_job(self, spec: JobSpec, now: Now, startup: bool = False) -> _Job:
        job = _Job(spec=spec)
        if isinstance(spec.schedule, Cron):
            job.zone = schedule.load_zone(spec.timezone)
            # Fires before now are the start-up's business (_startup_actions): a first
            # start runs nothing from before it.
            job.cursor = now.wall
            job.next_fire = self._next_fire(job, job.cursor)
        elif isinstance(spec.schedule, Every) and self.history.anchored:
            job.every_due = now.mono + _anchored_delay(spec.schedule.seconds, now.wall)
        elif isinstance(spec.schedule, Every):
            job.every_due = now.mono + spec.schedule.seconds
            base = self._every_base(spec) if startup and self.history.last_seen is not None else None
            if base is not None:
                # Count from the job's last start, not from this daemon's: a `@every 2d` job
                # on a host restarted daily still runs. Fires missed meanwhile: _startup_actions.
                job.every_due = now.mono + min(base + spec.schedule.seconds - now.wall,
                                               spec.schedule.seconds)
        return job

    def _every_base(self, spec: JobSpec) -> float | None:
        """The wall time an @every job's count continues from: its last scheduled fire, else
        its last start (a manual run), else None (it never ran: count from now)."""
        h = self.history
        return h.last_scheduled.get(spec.name, h.last_started.get(spec.name))

    def _next_fire(self, job: _Job, after: float) -> float | None:
        assert isinstance(job.spec.schedule, Cron) and job.zone is not None
        return _next_fire_at(job.spec.schedule, job.zone, after)

    def _startup_actions(self, now: Now) -> list[Action]:
        """Catch-up for fires missed while the daemon was down; @reboot jobs."""
        actions: list[Action] = []
        h = self.history
        for job in self.jobs.values():
            spec = job.spec
            if isinstance(spec.schedule, Reboot):
                if spec.name not in h.reboot_done and self._may_schedule(spec):
                    actions += self._due(job, Fire(Trigger.REBOOT, 1, h.boot_time), now)
                continue
            if h.last_seen is None:
                continue
            if isinstance(spec.schedule, Cron):
                since = max(h.last_seen, h.last_scheduled.get(spec.name, h.last_seen))
                late = self._fires_between(job, min(since, now.wall), now.wall)
            elif isinstance(spec.schedule, Every) and job.every_due is not None \
                    and job.every_due <= now.mono and (base := self._every_base(spec)) is not None:
                late = self._every_fires(job, now, since=max(h.last_seen, base))
            else:
                continue
            zone = job.zone
            actions += self._overdue(
                job, late, now, lambda t: f"the daemon was not running at {_clock(t, zone)}",
                "the daemon was not running")
        return actions

    def _every_fires(self, job: _Job, now: Now, since: float | None = None) -> _Late:
        """The @every fires due by now (those after wall time `since`); moves the count past now."""
        assert isinstance(job.spec.schedule, Every) and job.every_due is not None
        step = job.spec.schedule.seconds
        n = 1 + int((now.mono - job.every_due) // step)
        first_due = now.wall - (now.mono - job.every_due)  # wall
        job.every_due += step * n
        if self.history.anchored:
            # The nominal multiple, whatever the wake-up's lateness; and the count set again
            # from the wall clock, which may have been corrected to the database's.
            first_due = round(first_due / step) * step
            n = int((now.wall - first_due) // step) + 1 if now.wall >= first_due else 1
            job.every_due = now.mono + (first_due + n * step - now.wall)
        skip = 0
        if since is not None:  # fires while the daemon ran were handled then
            skip = max(0, min(n, int((since - first_due) // step) + 1))
        if n - skip <= 0:
            return _Late([])
        k0 = n - min(n - skip, CATCHUP_CAP)
        fires = [first_due + k * step for k in range(k0, n)]
        more = k0 - skip
        return _Late(fires, more, first_due + skip * step if more else None)

    def _overdue(self, job: _Job, late: _Late, now: Now, why: Callable[[float], str],
                 cause: str) -> list[Action]:
        """Fires that came due together (a restart, a stall): the catchup policy decides, as
        after a downtime. A fire under a minute late runs as scheduled (under any policy);
        with "last" the latest runs, with "all" each of the latest CATCHUP_CAP, oldest
        first, before anything newer; every other fire gets a `missed` row (why(t))."""
        spec = job.spec
        if not late.fires:
            return []
        latest = late.fires[-1]
        on_time = latest > now.wall - STARTUP_GRACE
        if not self._may_schedule(spec):
            run: list[float] = []
        elif spec.catchup is Catchup.ALL:
            run = late.fires
        elif spec.catchup is Catchup.LAST or on_time:
            run = late.fires[-1:]
        else:
            run = []
        actions = self._missed(job, late, run, why, cause)
        if run == [latest] and on_time and not job.catchup:
            return actions + self._jittered(job, Fire(Trigger.SCHEDULE, 1, latest), now)
        for t in run:
            trigger = Trigger.SCHEDULE if t == latest and on_time else Trigger.CATCHUP
            fire = Fire(trigger, 1, t)
            if len(job.catchup) >= CATCHUP_CAP:
                actions.append(Record(spec, fire, RunStatus.SKIPPED,
                                      f"{CATCHUP_CAP} catch-up runs are already waiting"))
            else:
                job.catchup.append(fire)
        return actions

    @staticmethod
    def _missed(job: _Job, late: _Late, ran: list[float], why: Callable[[float], str],
                cause: str) -> list[Action]:
        """A `missed` row for each of late.fires not in `ran`, and one for the older ones."""
        spec = job.spec
        actions: list[Action] = []
        if late.more:
            assert late.first is not None
            actions.append(Record(spec, Fire(Trigger.SCHEDULE, 1, late.first), RunStatus.MISSED,
                                  f"{late.more:,} fires from {_clock(late.first, job.zone)} to "
                                  f"before {_clock(late.fires[0], job.zone)} were missed ({cause}); "
                                  "this row stands for all of them"))
        for t in late.fires:
            if t not in ran:
                actions.append(Record(spec, Fire(Trigger.SCHEDULE, 1, t), RunStatus.MISSED, why(t)))
        return actions

    def _stall_cause(self, first: float, now: Now, zone: dt.tzinfo | None) -> str:
        """Fires came due and the daemon did not tick: it had no CPU (SIGSTOP, a frozen VM or
        cgroup) or the machine slept. From when it should have ticked to now."""
        since = min(self._expect, first)
        return (f"the daemon was stalled (no CPU or suspended) from "
                f"{_clock(since, zone, 'seconds')} to {_clock(now.wall, zone, 'seconds')}")

    def _fires_between(self, job: _Job, start: float, end: float) -> _Late:
        """The latest CATCHUP_CAP fires in (start, end], without walking years of minutes,
        and how many came before them."""
        window = 3600.0
        while True:
            lo = max(start, end - window)
            found: deque[float] = deque(maxlen=CATCHUP_CAP)
            t = self._next_fire(job, lo)
            while t is not None and t <= end:
                found.append(t)
                t = self._next_fire(job, t)
            if lo == start or len(found) >= CATCHUP_CAP:
                break
            window *= 8
        if len(found) < CATCHUP_CAP or found[0] <= start:
            return _Late(list(found))
        assert isinstance(job.spec.schedule, Cron) and job.zone is not None
        more = schedule.count_fires(job.spec.schedule, start, found[0] - 0.5, job.zone)
        first = self._next_fire(job, start) if more else None
        return _Late(list(found), more, first)

    def _may_schedule(self, spec: JobSpec) -> bool:
        return spec.enabled and spec.name not in self.paused and not self.stopping

    def reload(self, jobs: JobsFile, now: Now) -> None:
        """Apply a new valid jobs file by name; running runs go on under their old spec."""
        fresh = {spec.name: spec for spec in jobs.jobs}
        for name, job in list(self.jobs.items()):
            if name not in fresh:
                del self.jobs[name]
        for name, spec in fresh.items():
            old = self.jobs.get(name)
            if old is None:
                self.jobs[name] = self._new_job(spec, now)
            elif not _same_job(old.spec, spec):
                if old.spec.schedule != spec.schedule or old.spec.timezone != spec.timezone:
                    job = self._new_job(spec, now)
                    job.queued, job.pending, job.catchup = old.queued, old.pending, old.catchup
                    self.jobs[name] = job
                else:
                    old.spec = spec
            else:
                old.spec = spec  # only its line moved
        self._index_dependents()
        self.changed |= set(self.jobs)

    def pause(self, name: str) -> None:
        self.paused.add(name)
        self.changed.add(name)
        job = self.jobs.get(name)
        if job is not None:  # scheduled starts waiting to happen are dropped too
            job.queued, job.pending, job.catchup = None, [], deque()

    def resume(self, name: str) -> None:
        self.paused.discard(name)
        self.changed.add(name)

    # -- time ------------------------------------------------------------------------------

    def tick(self, now: Now) -> tuple[list[Action], float]:
        """Everything to do at `now`, and the monotonic time to call again at the latest."""
        actions, self._initial = self._initial, []
        drift = (now.wall - self._last.wall) - (now.mono - self._last.mono)
        jumped = abs(drift) > JUMP_THRESHOLD
        if jumped:
            log.warning("the wall clock jumped %s by %.0f s", "forward" if drift > 0 else "back",
                        abs(drift))
        # The daemon ticks on every wake-up (output, exits), so the common case is kept
        # cheap: only runs and jobs with something due now go through the full checks.
        mono, wall = now.mono, now.wall
        for run in list(self.by_id.values()):
            if ((run.kill_at is not None and run.kill_at <= mono)
                    or (run.deadline is not None and run.deadline <= mono)):
                actions += self._enforce(run, now)
        for run_id, kill_at in list(self.lingering.items()):
            if kill_at <= mono:
                del self.lingering[run_id]
                actions.append(Kill(run_id, signal.SIGKILL))
        jump = drift if jumped else 0.0
        for job in list(self.jobs.values()):
            if (jump or job.pending or job.catchup
                    or (job.next_fire is not None and job.next_fire <= wall)
                    or (job.every_due is not None and job.every_due <= mono)):
                actions += self._tick_job(job, now, jump)
        for bf in list(self.backfills.values()):
            actions += self._tick_backfill(bf)
        self._last = now
        return actions, self.wake(now)

    def _tick_job(self, job: _Job, now: Now, jump: float) -> list[Action]:
        actions: list[Action] = []
        spec = job.spec
        if jump < 0 and job.zone is not None:
            # Back in time: start again from now. A scheduled time that already has a run
            # is not run again: the run log's unique key refuses it.
            job.cursor = now.wall
            job.next_fire = self._next_fire(job, now.wall)
            self.changed.add(spec.name)
        if job.next_fire is not None and job.next_fire <= now.wall:
            late = self._fires_between(job, job.cursor, now.wall)
            job.cursor = now.wall
            job.next_fire = self._next_fire(job, now.wall)
            self.changed.add(spec.name)
            if jump:
                pick = self._pick(spec, late.fires, now, jump)
                if jump > 0 and self._may_schedule(spec):
                    # The skipped fires get rows too: a suspended machine shows up as a jump,
                    # because the monotonic clock stops while it sleeps.
                    cause = (f"the wall clock jumped forward by {_duration(jump)} (it was set, "
                             "or the machine was suspended)")
                    actions += self._missed(job, late, [pick] if pick is not None else [],
                                            lambda t: cause, cause)
                if pick is not None and self._may_schedule(spec):
                    actions += self._jittered(job, Fire(Trigger.SCHEDULE, 1, pick), now)
            elif self._may_schedule(spec) and late.fires:
                actions += self._came_due(job, late, now)
        if job.every_due is not None and job.every_due <= now.mono:
            late = self._every_fires(job, now)
            self.changed.add(spec.name)
            if self._may_schedule(spec):
                actions += self._came_due(job, late, now)
        still = []
        for due, fire in job.pending:
            if due <= now.mono:
                if fire.trigger is Trigger.RETRY:
                    self.changed.add(spec.name)  # `status` shows the pending retry
                if fire.backfill and (bf := self.backfills.get(spec.name)) is not None \
                        and bf.id == fire.backfill:
                    bf.slots.appendleft(fire)  # a slot's retry waits for a free place first
                elif self._may_schedule(spec) or fire.trigger is Trigger.MANUAL:
                    actions += self._due(job, fire, now)
            else:
                still.append((due, fire))
        job.pending = still
        if job.catchup and not self._active(spec.name) and self._may_schedule(spec):
            actions += self._start(job, job.catchup.popleft())
        return actions

    def _came_due(self, job: _Job, late: _Late, now: Now) -> list[Action]:
        """Fires due since the last tick: normally one, on time; after a stall, several or
        late ones, handled as after a downtime."""
        first = late.first if late.first is not None else late.fires[0]
        cause = self._stall_cause(first, now, job.zone) if (
            len(late.fires) > 1 or late.more or late.fires[0] < now.wall - STALL_NOTICE) else ""
        if len(late.fires) > 1 or late.more:
            log.info("%s: %d fires came due at once (%s)", job.spec.name,
                     len(late.fires) + late.more, cause)
        return self._overdue(job, late, now, lambda t: cause, cause)

    @staticmethod
    def _pick(spec: JobSpec, fires: list[float], now: Now, jump: float) -> float | None:
        """Which of the fires that came due since the last tick to run (at most one)."""
        if not fires:
            return None
        latest = fires[-1]
        assert isinstance(spec.schedule, Cron)
        if jump > 0:
            # Debian cron: after a small forward jump, fixed-time jobs run once for the
            # skipped interval; wildcard jobs (and everything after a big jump) run only
            # for the current minute.
            if jump < SMALL_JUMP and not spec.schedule.wildcard:
                return latest
            return latest if latest > now.wall - 60 else None
        return latest

    def _jittered(self, job: _Job, fire: Fire, now: Now) -> list[Action]:
        if job.spec.jitter > 0:
            job.pending.append((now.mono + self.rng.uniform(0, job.spec.jitter), fire))
            return []
        return self._due(job, fire, now)

    def wake(self, now: Now) -> float:
        """The monotonic time by which tick() must be called again."""
        mono = now.mono
        wake = mono + MAX_SLEEP
        fire = None  # the earliest next_fire (wall), turned into monotonic time once
        for job in self.jobs.values():
            t = job.next_fire
            if t is not None and (fire is None or t < fire):
                fire = t
            t = job.every_due
            if t is not None and t < wake:
                wake = t
            for due, _ in job.pending:
                if due < wake:
                    wake = due
            if job.catchup and not self._active(job.spec.name):
                wake = mono
        if fire is not None:
            wake = min(wake, mono + (fire - now.wall))
        for run in self.by_id.values():
            t = run.deadline
            if t is not None and t < wake:
                wake = t
            t = run.kill_at
            if t is not None and t < wake:
                wake = t
        for t in self.lingering.values():
            if t < wake:
                wake = t
        wake = max(wake, mono)
        self._expect = now.wall + (wake - mono)
        return wake

    # -- starting --------------------------------------------------------------------------

    def _active(self, name: str) -> list[_Run]:
        return self.runs.get(name, [])

    def _due(self, job: _Job, fire: Fire, now: Now) -> list[Action]:
        """A fire came due: start it, or apply the overlap policy."""
        spec = job.spec
        active = self._active(spec.name)
        if not active or spec.overlap is Overlap.ALLOW:
            return self._start(job, fire)
        previous = active[-1]
        label = f"run {previous.run_id}" if previous.run_id is not None else "the previous run"
        if spec.overlap is Overlap.QUEUE:
            if job.queued is None:
                job.queued = fire
                return []
            return [Record(spec, fire, RunStatus.SKIPPED,
                           f"{label} still running and another run already waiting (overlap = queue)")]
        if spec.overlap is Overlap.REPLACE:
            actions: list[Action] = []
            if job.queued is not None:
                actions.append(Record(spec, job.queued, RunStatus.SKIPPED,
                                      "replaced by a newer run before it started (overlap = replace)"))
            job.queued = fire  # starts when the old run is gone
            for run in active:
                if run.ending is None:
                    actions += self._signal(run, signal.SIGTERM, now,
                                            (RunStatus.KILLED, "replaced by a newer run (overlap = replace)"))
            return actions
        return [Record(spec, fire, RunStatus.SKIPPED, f"{label} still running")]

    def _start(self, job: _Job, fire: Fire) -> list[Action]:
        self.runs.setdefault(job.spec.name, []).append(_Run(job=job.spec, fire=fire))
        return [Start(job.spec, fire)]

    def _find(self, start: Start) -> _Run:
        for run in self.runs.get(start.job.name, []):
            if run.run_id is None and run.job is start.job and run.fire == start.fire:
                return run
        raise KeyError(start)

    def _forget(self, run: _Run) -> None:
        runs = self.runs[run.job.name]
        runs.remove(run)
        if not runs:
            del self.runs[run.job.name]
        if run.run_id is not None:
            del self.by_id[run.run_id]

    def started(self, start: Start, run_id: int, now: Now) -> None:
        """The daemon recorded and spawned `start` as run `run_id`."""
        run = self._find(start)
        run.run_id = run_id
        self.by_id[run_id] = run
        run.started_mono = now.mono
        if start.job.timeout:
            run.deadline = now.mono + start.job.timeout
        self.last_started[start.job.name] = now.wall

    def not_started(self, start: Start) -> None:
        """The daemon did not start `start`: a run for that time exists, or it could not spawn."""
        self._forget(self._find(start))

    def rerun_lost(self, name: str, fire: Fire, now: Now) -> list[Action]:
        """A run another host lost (on_lost = "retry"), to start here under the job's policy."""
        job = self.jobs.get(name)
        return [] if job is None else self._due(job, fire, now)

    def run_now(self, name: str, now: Now, params: tuple[tuple[str, str], ...] = ()) -> list[Action]:
        """`cronsup run JOB [--env K=V]`: a manual start under the job's overlap policy."""
        job = self.jobs[name]
        return self._due(job, Fire(Trigger.MANUAL, 1, now.wall, params), now)

    # -- running ---------------------------------------------------------------------------

    def _signal(self, run: _Run, sig: int, now: Now, why: tuple[RunStatus, str]) -> list[Action]:
        if run.ending is None:
            run.ending = why
        if run.run_id is None:
            return []
        if sig == signal.SIGTERM:
            run.kill_at = now.mono + run.job.kill_grace
        else:
            run.kill_at = None
        return [Kill(run.run_id, sig)]

    def _enforce(self, run: _Run, now: Now) -> list[Action]:
        if run.run_id is None:
            return []
        if run.kill_at is not None and run.kill_at <= now.mono:
            run.kill_at = None
            return [Kill(run.run_id, signal.SIGKILL)]
        if run.deadline is not None and run.deadline <= now.mono and run.ending is None:
            reason = f"timed out after {_duration(run.job.timeout or 0)}"
            if now.mono - run.deadline > STALL_NOTICE and run.started_mono is not None:
                reason += (f" (stopped at {_duration(now.mono - run.started_mono)}: "
                           "the daemon was stalled)")
            run.deadline = None
            return self._signal(run, signal.SIGTERM, now, (RunStatus.TIMEOUT, reason))
        return []

    def finished(self, run_id: int, exit_code: int | None, sig: int | None, now: Now) -> Outcome:
        """Run `run_id` ended: its outcome (status, reason, whether a retry follows), and in
        `follow` what comes next (queued runs, @after jobs)."""
        run = self.by_id[run_id]
        self._forget(run)
        if run.kill_at is not None:
            self.lingering[run_id] = run.kill_at
        spec, fire = run.job, run.fire
        if run.ending is not None:
            status, reason = run.ending
            if status is RunStatus.TIMEOUT and exit_code is not None and sig is None:
                reason += f" (then exited with code {exit_code})"
        elif sig is not None:
            status, reason = RunStatus.KILLED, f"killed by {_signame(sig)}"
        elif exit_code in spec.success_codes:
            status, reason = RunStatus.SUCCESS, None
        else:
            status, reason = RunStatus.FAILED, f"exit code {exit_code}"
        actions: list[Action] = []
        retry_at = None
        job = self.jobs.get(spec.name)
        if job is not None:
            if status is RunStatus.SUCCESS:
                self.last_success[spec.name] = now.wall
                actions += self._after_success(spec.name, now, fire)
            elif self._retryable(status, run) and fire.attempt - fire.first < spec.retries:
                said, retry_at = self._retry(job, fire, now)
                reason += said
            if job.queued is not None and not self._active(spec.name) and not self.stopping:
                queued, job.queued = job.queued, None
                actions += self._start(job, queued)
        return Outcome(status, reason, final=retry_at is None, retry_at=retry_at, follow=tuple(actions))

    def forget_lingering(self, run_id: int) -> None:
        """Nothing of run `run_id` is left to SIGKILL."""
        self.lingering.pop(run_id, None)

    def error(self, start: Start) -> None:
        """The run could not be started (bad user, shell, workdir): no retries."""
        self.not_started(start)

    @staticmethod
    def _retryable(status: RunStatus, run: _Run) -> bool:
        if status in (RunStatus.FAILED, RunStatus.TIMEOUT):
            return True
        return status is RunStatus.KILLED and run.ending is None  # killed from outside

    def _retry(self, job: _Job, fire: Fire, now: Now) -> tuple[str, float | None]:
        """Schedule the next attempt if it comes before the next run: what the reason adds,
        and the attempt's wall time (None: no retry follows)."""
        spec = job.spec
        delay = min(spec.retry_delay * spec.retry_backoff ** (fire.attempt - fire.first), spec.retry_max_delay)
        if spec.retry_jitter:
            delay = self.rng.uniform(delay / 2, delay)
        total = fire.first + spec.retries
        nxt = job.next_fire
        if nxt is None and job.every_due is not None:
            nxt = now.wall + (job.every_due - now.mono)
        if nxt is not None and now.wall + delay >= nxt and not fire.backfill:
            return "; no retry: the next scheduled run comes first", None
        if self.stopping:
            return "", None
        job.pending.append((now.mono + delay, Fire(Trigger.RETRY, fire.attempt + 1, fire.scheduled_for,
                                                  fire.params, fire.backfill, fire.first)))
        self.changed.add(spec.name)
        return f"; retrying in {_duration(delay)} (attempt {fire.attempt + 1} of {total})", now.wall + delay

    def _after_success(self, name: str, now: Now, fire: Fire) -> list[Action]:
        # A backfilled run's dependents run for its time and take its place in the backfill
        # until they end: with --max-parallel 1, each time's chain ends before the next starts.
        scheduled_for = fire.scheduled_for if fire.backfill else now.wall
        actions: list[Action] = []
        for dependent in self.dependents.get(name, ()):
            job = self.jobs[dependent]
            since = self.last_started.get(dependent, float("-inf"))
            if all(self.last_success.get(dep, float("-inf")) > since for dep in job.spec.after):
                if self._may_schedule(job.spec):
                    actions += self._due(job, Fire(Trigger.AFTER, 1, scheduled_for,
                                                   backfill=fire.backfill), now)
        return actions

    # -- backfills -------------------------------------------------------------------------

    def add_backfill(self, backfill_id: int, name: str, slots: list[tuple[float, int]],
                     max_parallel: int) -> None:
        """Run these (scheduled_for, attempt) slots of job `name`, oldest first, at most
        `max_parallel` at once (the daemon has recorded them; the next tick starts them)."""
        self.backfills[name] = backfill.Queue(
            backfill_id, name, deque(Fire(Trigger.BACKFILL, attempt, t, backfill=backfill_id, first=attempt)
                                     for t, attempt in sorted(slots)), max_parallel)

    def cancel_backfill(self, name: str) -> backfill.Queue | None:
        """`cronsup backfill --cancel JOB`: start no more of its slots (nor their retries);
        runs already going go on. The backfill that was going, or None."""
        bf = self.backfills.pop(name, None)
        job = self.jobs.get(name)
        if bf is not None and job is not None:
            job.pending = [(due, f) for due, f in job.pending if f.backfill != bf.id]
        return bf

    def _tick_backfill(self, bf: backfill.Queue) -> list[Action]:
        """Start the backfill's next slots while it has free places, and end it when done.

        Against the job's other runs the overlap policy holds: unless it is `allow`, no
        slot starts while a scheduled (or manual, or @after) run of the job runs or waits;
        a scheduled run that comes due while slots run meets them as any running run.
        """
        job = self.jobs.get(bf.job)
        if job is None:
            del self.backfills[bf.job]
            return [EndBackfill(bf.id, bf.job, "cancelled", "the job is no longer in the jobs file")]
        if self.stopping:
            return []
        active = self._active(bf.job)
        # The backfill's runs: its slots, their retries and the @after runs they set off.
        mine = sum(1 for runs in self.runs.values() for run in runs if run.fire.backfill == bf.id)
        if not bf.slots:
            if mine or any(f.backfill == bf.id for _, f in job.pending):
                return []
            del self.backfills[bf.job]
            return [EndBackfill(bf.id, bf.job, "done")]
        if job.spec.overlap is not Overlap.ALLOW and (
                job.queued is not None or any(run.fire.backfill != bf.id for run in active)):
            return []
        actions: list[Action] = []
        while bf.slots and mine < bf.max_parallel:
            actions += self._start(job, bf.slots.popleft())
            mine += 1
        return actions

    # -- stopping --------------------------------------------------------------------------

    def stop(self, now: Now) -> list[Action]:
        """SIGTERM to the daemon: no new starts; TERM every run, KILL after its grace."""
        self.stopping = True
        actions: list[Action] = []
        for job in self.jobs.values():
            job.queued, job.pending, job.catchup = None, [], deque()
        self.backfills.clear()  # their slots are in the run log: the next daemon goes on
        for run in list(self.by_id.values()):
            actions += self._signal(run, signal.SIGTERM, now, (RunStatus.KILLED, "stopped with the daemon"))
        return actions

    @property
    def idle(self) -> bool:
        return not self.runs

    def next_run(self, name: str) -> float | None:
        """The job's next scheduled start (wall), or None (@after, @reboot, can never fire)."""
        job = self.jobs[name]
        if job.next_fire is not None:
            return job.next_fire
        if job.every_due is not None:
            t = self._last.wall + (job.every_due - self._last.mono)
            if self.history.anchored:  # the nominal multiple: the clocks were read apart (and
                step = job.spec.schedule.seconds  # the wall set to the database's): 04:59:59.998
                t = round(t / step) * step  # would show as 04:59:59
            return t
        return None

    def retry_at(self, name: str) -> PendingRetry | None:
        """The job's pending retry, or None."""
        job = self.jobs.get(name)
        retries = [(due, fire) for due, fire in job.pending if fire.trigger is Trigger.RETRY] if job else []
        if not retries:
            return None
        due, fire = min(retries, key=lambda r: r[0])
        return PendingRetry(self._last.wall + (due - self._last.mono), fire.attempt, fire.first + job.spec.retries)

    def next_runs(self) -> dict[str, float | None]:
        """Each job's next scheduled start (wall), for `status`."""
        return {name: self.next_run(name) for name in self.jobs}


@functools.lru_cache(maxsize=8192)
def _next_fire_at(cron: Cron, zone: dt.tzinfo, after: float) -> float | None:
    """schedule.next_fire as a timestamp, memoized (a pure function of its arguments).

    Jobs that share a schedule come due together and ask the same questions in one tick:
    a thousand `* * * * *` lines cost one computation instead of three thousand (~30 us
    each), which is time spent before the first of them starts.
    """
    t = schedule.next_fire(cron, dt.datetime.fromtimestamp(after, zone), zone)
    return t.timestamp() if t is not None else None


def _clock(t: float, zone: dt.tzinfo | None, timespec: str | None = None) -> str:
    """A fire time for a reason: to the minute for cron fires, to the second for @every ones."""
    when = dt.datetime.fromtimestamp(t, zone) if zone else dt.datetime.fromtimestamp(t).astimezone()
    if timespec is None:
        timespec = "minutes" if when.second == 0 and when.microsecond == 0 else "seconds"
    return when.isoformat(timespec=timespec)
