"""Alerts: outcome events made into outbox items (webhook, healthcheck, notify_command), and
the sender that delivers them, with retries, in threads of its own (never the loop's).

The daemon's loop only hands events over (AlertReceiver, a `Receivers` lane); the sender
thread owns a connection of its own to the run log: it writes each event's items into the
outbox, hands due items to worker threads and records every attempt. An item stays in the
outbox until it is delivered or given up, so an alert due when the daemon stops is sent
after it starts again.
"""

from __future__ import annotations

import json
import logging
import queue
import random
import threading
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import replace

from cronsup import channels, clock, paths
from cronsup.events import FAILURE, FAILURES, RECOVERY, RETRY, START, SUCCESS, Event
from cronsup.model import JobSpec, JobsFile, RunStatus
from cronsup.runjson import iso, run_json
from cronsup.store import (
    DELIVERED,
    GAVE_UP,
    PENDING,
    DeliveryAttempt,
    OutboxItem,
    Run,
    RunLogError,
    RunStore,
)

log = logging.getLogger("cronsup")

TEST = "test"  # the event `cronsup notify-test` sends
WEBHOOK, HEALTHCHECK, COMMAND = "webhook", "healthcheck", "command"
OUTPUT_TAIL = 10_000  # bytes of output in an event
MAX_PENDING = 10_000  # items waiting in the outbox; beyond, the oldest are dropped
MAX_TRIES = 20  # about an hour of trying: 1 s doubling to 5 min
FIRST_RETRY = 1.0
MAX_RETRY_DELAY = 300.0
MAX_RETRY_AFTER = 3600.0  # a Retry-After longer than this is capped
GIVE_UP_AGE = 86400.0  # an alert older than a day is not worth sending any more
WORKERS = 8  # deliveries at once: a hung endpoint holds one for at most 10 s
# While the loop emits BURST events or more a second (a burst of starts and ends: the loop and
# the burst's processes need the CPU), the sender waits, for at most MAX_DEFER seconds.
BURST = 20
MAX_DEFER = 30.0
MIN_WAIT = 0.01  # the sender's shortest sleep, should a due item not be taken (a race)
BATCH = 200  # events written to the outbox per transaction
LANE_SIZE = 20_000  # events the alerts lane may fall behind by: a burst of 10,000 starts and ends
# A shared outbox (PostgreSQL) is looked at this often even when idle: another host may have
# queued an alert and died, or died delivering one (its claim lapses), with nothing to wake us.
SHARED_POLL = 10.0
_RID_NAMESPACE = uuid.UUID("5b7c1f0e-6a47-4a43-9d0e-0c3a5c7e2f11")

_failed = Counter()  # deliveries given up (or dropped), per channel, since the start
_failed_lock = threading.Lock()


def _gave_up(channel: str) -> None:
    """One delivery given up for good (tries used up, not worth retrying, or dropped from a
    full outbox): the hook for the metrics counter cronsup_notifications_failed_total."""
    with _failed_lock:
        _failed[channel] += 1


def gave_up_counts() -> dict[str, int]:
    with _failed_lock:
        return dict(_failed)


def run_rid(store_mark: str, run_id: int | None) -> str | None:
    """The healthchecks run id of a run: a UUID (the protocol wants one), the same for its
    start and end pings, also across a daemon restart."""
    return None if run_id is None else str(uuid.uuid5(_RID_NAMESPACE, f"{store_mark}:{run_id}"))


# -- the event -----------------------------------------------------------------------------------


def event_json(event: str, job: str, host: str, run: Run | None, output: bytes = b"",
               truncated: bool = False, consecutive_failures: int = 0,
               previous_status: str | None = None, next_run: float | None = None) -> dict:
    """The JSON event, version 1 (SPEC section 4)."""
    tail = output[-OUTPUT_TAIL:]
    return {
        "version": 1, "event": event, "job": job, "host": host,
        "run": None if run is None else run_json(run),
        "output_tail": tail.decode("utf-8", "replace"),
        "output_truncated": bool(truncated or len(output) > len(tail)),
        "consecutive_failures": consecutive_failures, "previous_status": previous_status,
        "next_run": iso(next_run),
    }


def failures_before(store: RunStore, job: str, run_id: int | None, scheduled_for: float,
                    limit: int = 500) -> tuple[int, str | None]:
    """(final failures in a row before this fire, the status of the fire before it).

    A fire's final outcome is its newest attempt (retries share the fire's scheduled time);
    runs that did not run (skipped, missed) or still run say nothing.
    """
    seen: set[float] = {scheduled_for}
    count, previous = 0, None
    runs = store.runs(job, limit=limit, before_id=run_id) if run_id is not None else \
        store.runs(job, limit=limit)
    for run in runs:
        if run.status in (RunStatus.RUNNING, RunStatus.SKIPPED, RunStatus.MISSED) or \
                run.scheduled_for in seen:
            continue
        seen.add(run.scheduled_for)
        if previous is None:
            previous = str(run.status)
        if run.status not in FAILURES:
            break
        count += 1
    return count, previous


def channels_of(spec: JobSpec | None, event: str) -> list[tuple[str, str]]:
    """(channel, target) pairs that get `event` for this job."""
    if spec is None:
        return []
    chosen: list[tuple[str, str]] = []
    wanted = event == TEST or event in spec.notify_on
    if wanted:
        chosen += [(WEBHOOK, url) for url in spec.webhook]
    if spec.healthcheck and (event in (START, SUCCESS, RECOVERY, FAILURE, RETRY, TEST)):
        chosen.append((HEALTHCHECK, spec.healthcheck))
    if wanted and spec.notify_command:
        chosen.append((COMMAND, spec.notify_command))
    return chosen


def ping_kind(event: str) -> str:
    return {START: "start", SUCCESS: "success", RECOVERY: "success", FAILURE: "fail"}.get(event, "log")


def shown(channel: str, target: str) -> str:
    return "notify_command" if channel == COMMAND else channels.shown(target)


def build_items(event: Event, store: RunStore, store_mark: str) -> list[OutboxItem]:
    """The outbox items one event makes (none for a job without channels for it)."""
    chosen = channels_of(event.spec, event.event)
    if not chosen:
        return []
    run = store.run(event.run_id) if event.run_id is not None else None
    if run is not None and event.outcome is not None and run.status is RunStatus.RUNNING:
        # Its end is still queued for the run log (locked): the outcome says how it ended.
        run = replace(run, status=event.outcome.status, reason=event.outcome.reason,
                      finished_at=event.time)
    exit_code = run.exit_code if run is not None else None
    items = []
    body = None
    for channel, target in chosen:
        if channel == HEALTHCHECK:
            text = event.output if event.event != START else b""
            if event.event == RETRY:
                reason = event.outcome.reason if event.outcome else ""
                text = f"attempt {event.attempt} failed ({reason}); it will be retried\n".encode() + text
            payload = json.dumps({"kind": ping_kind(event.event), "rid": run_rid(store_mark, event.run_id),
                                  "exit_code": exit_code,
                                  "body": text[-channels.PING_BODY:].decode("utf-8", "replace")}).encode()
        else:
            if body is None:
                failures, previous = failures_before(store, event.job, event.run_id, event.scheduled_for)
                if event.event == FAILURE:
                    failures += 1
                elif event.event in (SUCCESS, RECOVERY):
                    failures = 0
                body = event_json(event.event, event.job, event.host, run, event.output,
                                  event.truncated, failures, previous, event.next_run)
            if channel == WEBHOOK:
                payload = json.dumps(body, separators=(",", ":")).encode()
            else:
                payload = json.dumps({"vars": command_vars(body)}).encode()
        items.append(OutboxItem(event.run_id, event.job, event.event, channel, target,
                                shown(channel, target), payload, event.time))
    return items


def command_vars(body: dict) -> dict[str, str]:
    run = body.get("run") or {}
    code = run.get("exit_code")
    return {"CRONSUP_EVENT": body["event"], "CRONSUP_JOB": body["job"],
            "CRONSUP_RUN_ID": "" if run.get("id") is None else str(run["id"]),
            "CRONSUP_STATUS": run.get("status") or "",
            "CRONSUP_EXIT_CODE": "" if code is None else str(code),
            "CRONSUP_REASON": run.get("reason") or ""}


def deliver(http: channels.Http, item: OutboxItem, spec: JobSpec | None, store_mark: str,
            output: bytes = b"", body_limit: int | None = None) -> channels.Answer:
    """One attempt at one item."""
    if item.channel == WEBHOOK:
        if spec is None:
            spec = JobSpec(item.job, None, "", 0)  # type: ignore[arg-type] - unsigned: job is gone
        return channels.webhook(http, spec, item.target, item.payload, f"msg_{store_mark}_{item.id}")
    data = json.loads(item.payload)
    if item.channel == HEALTHCHECK:
        return channels.healthcheck(http, item.target, data["kind"], data["rid"], data["exit_code"],
                                    data["body"].encode(), body_limit)
    if spec is None or not spec.notify_command:
        return channels.Answer(False, "the job has no notify_command any more")
    return channels.command(spec, data["vars"], output)


def retry_delay(tries: int, retry_after: float | None) -> float:
    """Wait after the `tries`-th failed attempt: 1 s doubling to 5 min, drawn from [w/2, w]."""
    wait = min(MAX_RETRY_DELAY, FIRST_RETRY * 2 ** (tries - 1))
    wait = random.uniform(wait / 2, wait)
    if retry_after is not None:
        wait = max(wait, min(retry_after, MAX_RETRY_AFTER))
    return wait


# -- the daemon's side ---------------------------------------------------------------------------


class AlertReceiver:
    """The Receivers lane for alerts: hands the events that have a channel to the Sender."""

    name = "alerts"

    def __init__(self, sender: Sender):
        self.sender = sender

    def __call__(self, event: Event) -> None:
        if channels_of(event.spec, event.event):
            self.sender.submit(event)
        else:
            self.sender.busy()  # a start or an end all the same: the loop is at work


class Sender:
    """The outbox's one thread (its own run log connection) and its delivery workers."""

    def __init__(self, db_path: str, jobs: Callable[[], JobsFile], connect: Callable[[], RunStore], *,
                 workers: int = WORKERS, max_pending: int = MAX_PENDING):
        self.db_path = db_path
        self.connect = connect  # the sender's own connection (the daemon's store's sibling)
        self.jobs = jobs  # the daemon's current jobs, for secrets, users and shells
        self.store_mark = paths.store_mark(db_path)
        self.max_pending = max_pending
        self.workers = workers
        self.dropped = 0
        self._events: deque[Event] = deque()
        self._results: deque[tuple[OutboxItem, channels.Answer, float]] = deque()
        self._wake = threading.Condition()
        self._stop = False
        self._inflight: set[int] = set()
        self._limits: dict[str, int] = {}  # Ping-Body-Limit per healthcheck target
        self._work: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._recent: deque[float] = deque()  # clock.mono of the events of the last second
        self._recent_lock = threading.Lock()
        self._stopping = threading.Event()
        self._shared = False  # the outbox is several hosts' (see SHARED_POLL)
        self.http = channels.Http()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="cronsup-alerts", daemon=True)
            self._thread.start()
            for n in range(self.workers):
                threading.Thread(target=self._worker, name=f"cronsup-alert-{n}", daemon=True).start()

    def busy(self) -> None:
        """An event came (the loop is handling runs): the sender keeps out of a burst's way."""
        now = clock.mono()
        with self._recent_lock:
            self._recent.append(now)
            while self._recent and self._recent[0] < now - 1.0:
                self._recent.popleft()

    def _in_burst(self) -> bool:
        now = clock.mono()
        with self._recent_lock:
            while self._recent and self._recent[0] < now - 1.0:
                self._recent.popleft()
            return len(self._recent) >= BURST

    def submit(self, event: Event) -> None:
        self.start()
        self.busy()
        with self._wake:
            self._events.append(event)
            if len(self._events) == 1:
                self._wake.notify()

    def close(self, grace: float) -> None:
        """Write what was handed over into the outbox (deliveries in flight are abandoned:
        their items stay pending for the next start)."""
        self._stopping.set()
        with self._wake:
            self._stop = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(grace)

    # -- the sender thread -----------------------------------------------------------------

    def _run(self) -> None:
        store = None
        while store is None:
            try:
                store = self.connect()
            except RunLogError as e:
                log.warning("alerts: cannot open the run log: %s; trying again in 5 s", e)
                with self._wake:
                    if self._stop or self._wake.wait_for(lambda: self._stop, 5.0):
                        return
        shared = getattr(store, "alerts_mark", None)  # several hosts' one outbox (PostgreSQL)
        if shared is not None:
            self._shared = True
            try:
                self.store_mark = shared()
            except RunLogError as e:
                log.warning("alerts: %s", e)
        try:
            while True:
                try:
                    if not self._step(store):
                        return
                except Exception:  # noqa: BLE001 - one bug must not stop every alert
                    log.exception("alerts: internal error in the sender; it goes on")
                    self._stopping.wait(1.0)
        finally:
            store.close()

    def _keep_out_of_the_way(self) -> None:
        """Wait while the loop is in a burst of runs, up to MAX_DEFER: the sender's work would
        compete with the loop and the burst's processes for the CPU (and the interpreter)."""
        since = clock.mono()
        while not self._stopping.is_set() and self._in_burst() and clock.mono() - since < MAX_DEFER:
            self._stopping.wait(0.1)

    def _step(self, store: RunStore) -> bool:
        """One pass: take events and results, dispatch, sleep; False once stopped."""
        self._keep_out_of_the_way()
        with self._wake:
            events = [self._events.popleft() for _ in range(min(BATCH, len(self._events)))]
            results = [self._results.popleft() for _ in range(len(self._results))]
            stopping = self._stop
        if events:
            self._queue(store, events)
        for item, answer, at in results:
            self._record(store, item, answer, at)
        if stopping:
            return bool(self._events)
        if events or results:
            return True  # more may have come meanwhile
        self._dispatch(store)
        # Asleep until an event, a result or the next item due (in flight ones left out):
        # an idle sender never wakes, a hung delivery is not polled.
        wait: float | None = None
        if self._free():
            try:
                nxt = store.next_delivery_at(list(self._inflight))
            except RunLogError as e:
                log.warning("alerts: %s", e)
                nxt = clock.wall() + 1.0  # look again in a second
            if nxt is not None:
                wait = max(MIN_WAIT, nxt - clock.wall())
            if self._shared:
                wait = SHARED_POLL if wait is None else min(wait, SHARED_POLL)
        with self._wake:
            if not (self._events or self._results or self._stop):
                self._wake.wait(wait)
        return True

    def _try(self, method, *args):
        try:
            return method(*args)
        except RunLogError as e:
            log.warning("alerts: %s", e)
            return None

    def _free(self) -> int:
        return self.workers - len(self._inflight)

    def _queue(self, store: RunStore, events: list[Event]) -> None:
        items: list[OutboxItem] = []
        for event in events:
            try:
                items += build_items(event, store, self.store_mark)
            except RunLogError as e:
                log.warning("alerts: the %s event of %s[%s] is not sent: %s", event.event,
                            event.job, event.run_id, e)
        if not items:
            return
        for _ in range(50):  # the loop may hold the run log for a moment
            try:
                dropped = store.add_deliveries(items, self.max_pending)
                break
            except RunLogError as e:
                error = e
                with self._wake:
                    self._wake.wait(0.1)
        else:
            log.warning("alerts: %d alerts are not sent: %s", len(items), error)
            for item in items:
                _gave_up(item.channel)
            return
        for item in dropped:
            self.dropped += 1
            _gave_up(item.channel)
        if dropped:
            log.warning("alerts: the outbox holds %d alerts waiting; dropped the %d oldest unsent "
                        "(%d so far), the %s event of %s to %s first", self.max_pending,
                        len(dropped), self.dropped, dropped[0].event, dropped[0].job, dropped[0].shown)

    def _dispatch(self, store: RunStore) -> None:
        free = self._free()
        if free <= 0:
            return
        due = self._try(store.due_deliveries, clock.wall(), free, list(self._inflight)) or []
        jobs = {job.name: job for job in self.jobs().jobs} if due else {}
        for item in due:
            output = b""
            if item.channel == COMMAND and item.run_id is not None:
                found = self._try(store.output, item.run_id)
                output = found[0] if found else b""
            self._inflight.add(item.id)
            self._work.put((item, jobs.get(item.job), output))

    def _worker(self) -> None:
        while True:
            item, spec, output = self._work.get()
            try:
                answer = deliver(self.http, item, spec, self.store_mark, output,
                                 self._limits.get(item.target))
            except Exception as e:  # noqa: BLE001 - a bug in one delivery is that delivery's
                log.exception("alerts: delivering the %s event of %s to %s", item.event, item.job,
                              item.shown)
                answer = channels.Answer(False, f"internal error: {type(e).__name__}")
            if answer.body_limit is not None:
                self._limits[item.target] = answer.body_limit
            with self._wake:
                self._results.append((item, answer, clock.wall()))
                self._wake.notify()

    def _record(self, store: RunStore, item: OutboxItem, answer: channels.Answer, at: float) -> None:
        self._inflight.discard(item.id)
        tries = item.tries + 1
        what = f"the {item.event} event of {item.job}[{item.run_id}] to {item.channel} {item.shown}"
        if answer.ok:
            state, next_try = DELIVERED, None
            if tries > 1:
                log.info("alerts: delivered %s at try %d: %s", what, tries, answer.text)
        elif answer.retry and tries < MAX_TRIES and at - item.created_at < GIVE_UP_AGE:
            state = PENDING
            next_try = at + retry_delay(tries, answer.retry_after)
            log.warning("alerts: %s: %s; trying again in %.0fs (try %d of %d)", what, answer.text,
                        next_try - at, tries, MAX_TRIES)
        else:
            state, next_try = GAVE_UP, None
            why = "not worth retrying" if not answer.retry else f"gave up after {tries} tries"
            log.warning("alerts: %s: %s; %s", what, answer.text, why)
            _gave_up(item.channel)
        attempt = DeliveryAttempt(item.id, item.job, item.channel, item.shown, at, answer.ok,
                                  answer.text, next_try)
        for _ in range(50):
            try:
                store.record_delivery(attempt, state)
                return
            except RunLogError as e:
                error = e
                with self._wake:
                    self._wake.wait(0.1)
        log.warning("alerts: cannot record an attempt at %s: %s", what, error)
