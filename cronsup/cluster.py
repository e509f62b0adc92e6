"""Several hosts on one PostgreSQL run log, the daemon's side: the database's clock, run leases
and takeover, scope and hosts, the job definitions the nodes agree on, and run requests.

A mixin of Daemon; with a SQLite run log every hook here does nothing.
"""

from __future__ import annotations

import hashlib
import logging
import random
import signal
from collections import Counter
from dataclasses import replace

from cronsup import __version__, clock
from cronsup.model import JobSpec, OnLost, Outcome, Overlap, RunStatus, Scope, Trigger
from cronsup.pruner import Pruner
from cronsup.store import NewRun, RunLogError
from cronsup.supervisor import Fire, Kill, Now, Record, Start

log = logging.getLogger("cronsup")

DEFAULT_LEASE = 30.0
CLOCK_WARN = 1.0  # seconds between this host's clock and the database's worth a warning
REQUEST_POLL = 1.0  # how often `cronsup run` requests in the store are looked for
CLAIM_PART = 25  # fires claimed (and then spawned) together when many are due at once
GRACE = 1 / 3  # a lapsed lease is expired this fraction of the lease after it lapsed
UNCLAIMED_KEPT = 10_000  # fires not claimed (heartbeat too old) kept to be recorded `missed`
_SCHEDULED = (Trigger.SCHEDULE, Trigger.CATCHUP)  # the schedule's own times, not a request's
MISSED_UNCLAIMED = ("not started: no host could claim it at its time (the run log did not answer, "
                    "or this node's heartbeat had lapsed)")


def job_digest(spec: JobSpec) -> str:
    """A short hash of a job's definition (not of where it is in the file)."""
    return hashlib.sha256(repr(replace(spec, line=0, auto_named=True)).encode()).hexdigest()[:12]


def file_digest(specs) -> str:
    return hashlib.sha256("\n".join(sorted(job_digest(s) for s in specs)).encode()).hexdigest()[:12]


def live(nodes: list[dict], live_for: float) -> dict[str, dict]:
    return {n["node"]: n for n in nodes
            if n["stopped_at"] is None and n["age"] is not None and n["age"] <= live_for}


def disagreements(nodes: list[dict], digests: dict[str, dict[str, str | None]],
                  live_for: float) -> dict[str, set[str]]:
    """node -> the jobs it defines differently from the cluster. Per job, the digest most
    live nodes have is the cluster's (a tie: the longest-running node's)."""
    alive = live(nodes, live_for)
    found: dict[str, set[str]] = {}
    for name, by_node in digests.items():
        by_node = {node: d for node, d in by_node.items() if d is not None}  # not published yet
        votes = Counter(d for node, d in by_node.items() if node in alive)
        if not votes:
            continue
        top = max(votes.values())
        leaders = {d for d, c in votes.items() if c == top}
        if len(leaders) > 1:
            oldest = min((n for n in alive if by_node.get(n) in leaders),
                         key=lambda n: (alive[n]["started_at"], n))
            leaders = {by_node[oldest]}
        for node, digest in by_node.items():
            if digest not in leaders:
                found.setdefault(node, set()).add(name)
    return found


class Cluster:
    """Mixed into Daemon."""

    cluster = False

    # -- start-up -------------------------------------------------------------------------

    def _cluster_start(self) -> None:
        """After the store is open: the database's clock becomes this daemon's wall clock."""
        self.cluster = bool(getattr(self.log, "cluster", False))
        if not self.cluster:
            return
        self._db_offset = 0.0
        self._clock_warned = False
        self._pruner = Pruner(self.log.sibling)  # prunes beside the loop (thousands of round trips)
        self._measure_clock()
        base = self.now
        self.now = lambda: (n := base())._replace(wall=n.wall + self._db_offset)
        now = self.now()
        self._lease_ok = now.mono  # registered: set_daemon follows at once
        self._db_ok_since: float | None = now.mono
        self._cluster_due = self._requests_due = 0.0
        self._claims_refused = False
        self._unclaimed: list[tuple[JobSpec, Fire]] = []  # see _record_unclaimed
        self._disagree: set[str] = set()
        self._digested: object = None

    def _measure_clock(self) -> None:
        before = clock.wall()
        db = self.log.db_now()
        after = clock.wall()
        offset = db - (before + after) / 2
        if abs(offset) > CLOCK_WARN and not self._clock_warned:
            log.warning("this host's clock is %+.1fs off the database's; cronsup uses the "
                        "database's clock for schedules and leases (fix NTP on this host)", -offset)
            self._clock_warned = True
        elif abs(offset) <= CLOCK_WARN:
            self._clock_warned = False
        self._db_offset = offset

    def _lease_s(self) -> float:
        leases = [j.lease for j in self.jobs.jobs]
        return min([DEFAULT_LEASE, *leases])

    # -- what this node may claim ---------------------------------------------------------

    def _may_run(self, spec: JobSpec) -> bool:
        if spec.hosts and self.host not in spec.hosts:
            return False
        return spec.name not in self._disagree

    def _may_claim(self, now: Now) -> bool:
        """False while this node's heartbeat is older than its lease (it was stopped, or the
        database unreachable): its runs may have been taken over; it claims again once it
        has heartbeated."""
        return now.mono - self._lease_ok < self._lease_s()

    def _cluster_actions(self, actions: list, now: Now) -> list:
        """Drop the starts and records of jobs this node may not claim now."""
        if not self.cluster:
            return actions
        kept = []
        claiming = self._may_claim(now)
        if not claiming and not self._claims_refused and any(isinstance(a, Start) for a in actions):
            log.warning("not claiming: this node's last heartbeat is %.0fs old (lease %gs); "
                        "claiming again after the next heartbeat", now.mono - self._lease_ok,
                        self._lease_s())
            self._claims_refused = True
        for action in actions:
            if isinstance(action, (Start, Record)):
                spec = action.job
                if not self._may_run(spec) or (isinstance(action, Start) and not claiming):
                    if isinstance(action, Start):
                        self.supervisor.not_started(action)
                        if self._may_run(spec) and action.fire.trigger in _SCHEDULED \
                                and len(self._unclaimed) < UNCLAIMED_KEPT:
                            self._unclaimed.append((spec, action.fire))
                    continue
            kept.append(action)
        return kept

    def _claim_parts(self, starts: list) -> list[list]:
        """Starts to claim and spawn part by part: many fires due at once are claimed in an
        order of this node's own, in parts, so the nodes racing for them share them out, and
        each part starts while the next is claimed."""
        if not self.cluster or len(starts) <= CLAIM_PART:
            return [starts] if starts else []
        starts = list(starts)
        random.shuffle(starts)
        return [starts[i:i + CLAIM_PART] for i in range(0, len(starts), CLAIM_PART)]

    def _cluster_row(self, spec: JobSpec, row: NewRun) -> NewRun:
        """The claim's key and terms on a PostgreSQL run log."""
        if not self.cluster:
            return row
        host_scoped = spec.scope is Scope.HOST
        return replace(row, node_key=self.host if host_scoped else "", lease=spec.lease,
                       exclusive=spec.overlap is not Overlap.ALLOW)

    # -- heartbeat, takeover, agreement, requests ----------------------------------------

    def _cluster_upkeep(self, now: Now) -> None:
        if not self.cluster:
            return
        # A call to a stalled database must not hold the loop past a third of a lease.
        self.log.timeout = max(1.0, min(10.0, self._lease_s() / 3))
        if now.mono >= self._cluster_due:
            self._cluster_due = now.mono + self._lease_s() / 3
            self._heartbeat(now)
        if now.mono >= self._requests_due and self._may_claim(now):
            self._requests_due = now.mono + REQUEST_POLL
            self._take_requests(now)

    def _heartbeat(self, now: Now) -> None:
        ids = list(self.running) + [p.run_id for p in self.pending]
        try:
            self._measure_clock()
            ours = self.log.heartbeat_runs(ids)
            self.log.update_daemon(last_seen=now.wall)
            if self._digested is not self.jobs:
                self._publish_digests()
            self._agree()
            self._sync_paused(set(self.log.paused()))
        except RunLogError as e:
            if self._db_ok_since is not None:
                log.error("cannot heartbeat (%s); running jobs go on, nothing new is claimed "
                          "once the lease (%gs) has passed", e, self._lease_s())
            self._db_ok_since = None
            return
        if self._db_ok_since is None:
            log.info("heartbeat again: the run log answers")
            self._db_ok_since = now.mono
        self._lease_ok = now.mono
        self._claims_refused = False
        for run_id in set(ids) - ours:
            self._taken_over(run_id)
        self._record_unclaimed(now)
        # After an outage every node renews its leases within a third of a lease: expire
        # others' runs only once this node has been up that long, never in the first rush.
        if now.mono - self._db_ok_since >= self._lease_s() / 2:
            self._expire(now)

    def _record_unclaimed(self, now: Now) -> None:
        """The fires this node did not claim while its heartbeat was too old (the run log did
        not answer, or the node was stopped) get a `missed` row, unless a host ran them: once
        they are a third of a lease old, so that a host able to claim them has done so."""
        settle = now.wall - self._lease_s() / 3
        ripe = [(spec, fire) for spec, fire in self._unclaimed if fire.scheduled_for <= settle]
        if not ripe:
            return
        rows = [self._cluster_row(spec, NewRun(spec.name, fire.trigger, fire.attempt, fire.scheduled_for,
                                               status=RunStatus.MISSED, reason=MISSED_UNCLAIMED,
                                               finished_at=now.wall, params=fire.params))
                for spec, fire in ripe]
        try:
            ids = self.log.insert_runs(rows, host=self.host, boot_id=self.boot_id)
        except RunLogError as e:
            log.error("cannot record the fires not claimed meanwhile as missed: %s", e)
            return
        self._unclaimed = [x for x in self._unclaimed if x[1].scheduled_for > settle]
        for (spec, fire), run_id in zip(ripe, ids):
            if run_id is not None:  # None: a host ran it, or recorded it already
                log.info("%s[%d]: %s (%s)", spec.name, run_id, RunStatus.MISSED, MISSED_UNCLAIMED)
                self._emit_outcome(spec, spec.name, run_id, Outcome(RunStatus.MISSED, MISSED_UNCLAIMED),
                                   fire, now)

    def _sync_paused(self, paused: set[str]) -> None:
        """Pauses are the cluster's: `cronsup pause` through any host pauses the job on all."""
        for name in paused - self.supervisor.paused:
            log.info("%s: paused (through another host)", name)
            self.supervisor.pause(name)
        for name in self.supervisor.paused - paused:
            log.info("%s: resumed (through another host)", name)
            self.supervisor.resume(name)

    def _taken_over(self, run_id: int) -> None:
        entry = self.running.get(run_id)
        if entry is None:
            return
        log.error("run %d (%s): its lease lapsed and the cluster marked it lost; killing it, "
                  "its result will not be recorded", run_id, entry.job.name)
        self._kill([Kill(run_id, signal.SIGKILL)])

    def _expire(self, now: Now) -> None:
        try:
            lost = self.log.expire_leases(GRACE, "its host stopped heartbeating (lease lapsed)")
        except RunLogError as e:
            log.error("cannot expire lapsed leases: %s", e)
            return
        for run in lost:
            spec = self.jobs.get(run.job)
            log.warning("%s[%d]: lost: %s stopped heartbeating", run.job, run.id, run.host)
            fire = Fire(run.trigger, run.attempt, run.scheduled_for)
            self._emit_outcome(spec, run.job, run.id, Outcome(RunStatus.LOST, run.reason), fire, now)
            if spec is None or spec.on_lost is not OnLost.RETRY or not self._may_run(spec):
                continue
            if run.attempt > spec.retries + 1:
                log.warning("%s: not running it again: attempt %d was its last", run.job, run.attempt)
                continue
            log.info("%s: running it again here (on_lost = \"retry\"), attempt %d", run.job, run.attempt + 1)
            self.execute(self.supervisor.rerun_lost(
                run.job, Fire(Trigger.RETRY, run.attempt + 1, run.scheduled_for), now), now)

    def _publish_digests(self) -> None:
        self.log.set_digests({spec.name: job_digest(spec) for spec in self.jobs.jobs})
        self.log.set_node_facts(version=__version__, jobs_digest=file_digest(self.jobs.jobs))
        self._digested = self.jobs

    def _agree(self) -> None:
        """The jobs this node defines differently from the cluster's (see disagreements)."""
        live_for = max(3 * self._lease_s(), 10.0)
        disagree = disagreements(self.log.nodes(), self.log.job_digests(), live_for).get(self.host, set())
        for name in sorted(disagree - self._disagree):
            log.warning("%s: this host's definition differs from the cluster's; not claiming it "
                        "(see `cronsup nodes`)", name)
        for name in sorted(self._disagree - disagree):
            log.info("%s: this host's definition agrees with the cluster's again", name)
        self._disagree = disagree

    def _take_requests(self, now: Now) -> None:
        names = [s.name for s in self.jobs.jobs if self._may_run(s)]
        try:
            taken = self.log.take_requests(names)
        except RunLogError as e:
            log.error("cannot read run requests: %s", e)
            return
        for request_id, job in taken:
            log.info("%s: run requested through the run log (request %d)", job, request_id)
            actions = self.supervisor.run_now(job, now)
            ids = self.execute(actions, now)
            run_id = next((ids[id(a)] for a in actions if id(a) in ids), None)
            try:
                self.log.answer_request(request_id, run_id)
            except RunLogError as e:
                log.error("cannot answer run request %d: %s", request_id, e)
