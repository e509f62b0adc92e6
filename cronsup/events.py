"""Events: one per start and per outcome, handed to receivers that cannot delay or stop the loop.

The daemon names each event (SPEC section 4) from the supervisor's Outcome and emits it;
`Receivers` gives every receiver its own thread and a bounded queue, so a receiver that
raises is logged and skipped, one that hangs only fills its own queue (then drops, counted),
and the loop's `emit` never waits. Mail is the first receiver; alerts add more.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from cronsup import mail
from cronsup.model import JobSpec, MailOn, Outcome, RunStatus, Trigger

log = logging.getLogger("cronsup")

START, SUCCESS, FAILURE, RECOVERY, RETRY, SKIPPED, MISSED = (
    "start", "success", "failure", "recovery", "retry", "skipped", "missed")
EVENTS = (START, SUCCESS, FAILURE, RECOVERY, RETRY, SKIPPED, MISSED)
# The statuses of a final failure (SPEC section 4).
FAILURES = frozenset({RunStatus.FAILED, RunStatus.TIMEOUT, RunStatus.KILLED, RunStatus.ERROR,
                      RunStatus.LOST})
QUEUE_SIZE = 1000  # events a receiver may fall behind by before new ones are dropped


@dataclass(frozen=True)
class Event:
    """Something a receiver may act on: a run started, or how it ended."""

    event: str  # one of EVENTS
    job: str
    spec: JobSpec | None  # None: a lost run of a job no longer in the jobs file
    run_id: int | None  # None: a skipped or missed fire the run log refused to record
    outcome: Outcome | None  # None for `start`
    host: str
    time: float  # wall
    trigger: Trigger
    attempt: int
    scheduled_for: float
    output: bytes = b""  # what the run printed (its captured part), for outcomes
    truncated: bool = False
    next_run: float | None = None  # the job's next run after this outcome (a retry's time)


def event_name(outcome: Outcome, failing: bool) -> str:
    """The event an outcome makes; `failing`: the job's last final outcome was a failure.

    A failed attempt that is retried is `retry`, not `failure`: only final outcomes count.
    """
    status = outcome.status
    if status is RunStatus.SKIPPED:
        return SKIPPED
    if status is RunStatus.MISSED:
        return MISSED
    if status is RunStatus.SUCCESS:
        return RECOVERY if failing else SUCCESS
    return FAILURE if outcome.final else RETRY


class Failing:
    """Which jobs' last final outcome was a failure, so a success can be named `recovery`.

    Seeded at start-up with each job's latest run (`seed`); a job whose latest run said
    nothing (skipped, missed) asks `earlier(job, run_id)` at its first success for the status
    of its last run that ended before. A retry pending when the previous daemon stopped was
    dropped with it, so that run counts as final.
    """

    def __init__(self, earlier: Callable[[str, int], RunStatus | None]):
        self._earlier = earlier
        self._failing: dict[str, bool] = {}

    def seed(self, latest: dict[str, RunStatus]) -> None:
        for job, status in latest.items():
            if status is RunStatus.SUCCESS or status in FAILURES:
                self._failing[job] = status is not RunStatus.SUCCESS

    def name(self, job: str, run_id: int | None, outcome: Outcome) -> str:
        """The outcome's event name; remembers final outcomes of runs that ran."""
        if outcome.status in (RunStatus.SKIPPED, RunStatus.MISSED):
            return event_name(outcome, False)
        failing = self._failing.get(job)
        if failing is None and outcome.status is RunStatus.SUCCESS and run_id is not None:
            failing = self._earlier(job, run_id) in FAILURES
        name = event_name(outcome, bool(failing))
        if outcome.final:
            failing = outcome.status is not RunStatus.SUCCESS
        self._failing[job] = failing
        return name


Receiver = Callable[[Event], None]


class Receivers:
    """Hands each event to every receiver, each in its own thread; `emit` never blocks."""

    def __init__(self, receivers: Iterable[Receiver] = (), queue_size: int = QUEUE_SIZE):
        self._lanes = [_Lane(r, queue_size) for r in receivers]

    def add(self, receiver: Receiver, queue_size: int = QUEUE_SIZE) -> None:
        self._lanes.append(_Lane(receiver, queue_size))

    def emit(self, event: Event) -> None:
        for lane in self._lanes:
            lane.put(event)

    @property
    def dropped(self) -> int:
        """Events dropped so far because a receiver's queue was full."""
        return sum(lane.dropped for lane in self._lanes)

    def close(self, grace: float = 2.0) -> None:
        """Let the receivers finish what is queued, waiting at most `grace` seconds in all
        (a hung receiver is abandoned: its thread is a daemon thread)."""
        for lane in self._lanes:
            lane.stop()
        share = grace / max(1, len(self._lanes))
        for lane in self._lanes:
            lane.join(share)


class _Lane:
    """One receiver's queue and thread (started at its first event)."""

    def __init__(self, receiver: Receiver, size: int):
        self.receiver = receiver
        self.name = getattr(receiver, "name", None) or getattr(receiver, "__name__", None) \
            or type(receiver).__name__
        self.queue: queue.Queue[Event | None] = queue.Queue(maxsize=size)
        self.dropped = 0
        self.thread: threading.Thread | None = None

    def put(self, event: Event) -> None:
        # Started here, not in __init__: the Daemon is built before `--detach` forks, and a
        # thread does not survive a fork.
        if self.thread is None:
            self.thread = threading.Thread(target=self._work, name=f"cronsup-{self.name}", daemon=True)
            self.thread.start()
        try:
            self.queue.put_nowait(event)
        except queue.Full:
            self.dropped += 1
            if self.dropped & (self.dropped - 1) == 0:  # 1, 2, 4, 8...: said, not flooded
                log.warning("receiver %s is behind by %d events: dropped %d so far (%s of %s)",
                            self.name, self.queue.maxsize, self.dropped, event.event, event.job)

    def stop(self) -> None:
        if self.thread is not None:
            try:
                self.queue.put_nowait(None)
            except queue.Full:
                pass  # it is stuck; join gives up on it

    def join(self, timeout: float) -> None:
        if self.thread is not None:
            self.thread.join(timeout)

    def _work(self) -> None:
        while (event := self.queue.get()) is not None:
            try:
                self.receiver(event)
            except Exception:  # noqa: BLE001 - huey's _emit: a receiver's bug is logged, not fatal
                log.exception("receiver %s failed on the %s event of %s[%s]", self.name,
                              event.event, event.job, event.run_id)


class MailReceiver:
    """Mail to a job's mailto as its mail_on says: cron's rule (what a run printed, whatever
    its outcome), final failures only (with their output), every final outcome, or never."""

    name = "mail"

    def __init__(self, *, user: str, sendmail: str | None = None):
        self.user = user  # the daemon's user, for jobs that name none
        self.sendmail = sendmail  # None: look in the usual places (mail.find_sendmail)

    def __call__(self, event: Event) -> None:
        outcome, job = event.outcome, event.spec
        if outcome is None or job is None or not job.mailto:
            return
        mail_on = job.mail_on
        if mail_on is MailOn.NEVER or (mail_on is MailOn.OUTPUT and not event.output):
            return
        if mail_on is MailOn.FAILURE and event.event != FAILURE:
            return
        if mail_on is MailOn.ALWAYS and event.event not in (SUCCESS, RECOVERY, FAILURE):
            return
        summary = f"{outcome.status}" + (f": {outcome.reason}" if outcome.reason else "")
        output = event.output
        if not output:  # a failure that printed nothing still says what happened
            output = f"(no output) run {event.run_id}: {summary}\n".encode()
        mail.send(job, summary, output, host=event.host, user=job.user or self.user,
                  sendmail=self.sendmail)
