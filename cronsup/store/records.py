"""The records a run store holds and hands out: plain dataclasses, no storage code.

Every store (SQLite today) takes and returns these; readers (status, logs, run --wait) and
the daemon see nothing else of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from cronsup.model import RunStatus, Trigger

# Statuses `logs --failed` shows: every run that did not succeed and was not merely skipped
# by the overlap policy (a `skipped` run is the policy working as configured), nor running.
FAILED_STATUSES: tuple[RunStatus, ...] = (
    RunStatus.FAILED,
    RunStatus.TIMEOUT,
    RunStatus.KILLED,
    RunStatus.LOST,
    RunStatus.MISSED,
    RunStatus.ERROR,
)

# Statuses of runs whose process ran and whose end is known: what `stats` counts. `lost`
# (end unknown), `skipped`, `missed` and `error` (never started) say nothing about how long
# the job takes or how often it succeeds.
RAN_STATUSES: tuple[RunStatus, ...] = (
    RunStatus.SUCCESS,
    RunStatus.FAILED,
    RunStatus.TIMEOUT,
    RunStatus.KILLED,
)

# Upper bounds (seconds) of the stored run-duration histogram: from a second to six hours,
# what cron jobs take. Stored per bucket (not cumulative) under these labels; changing them
# needs a migration, as the counters are kept for good.
DURATION_BUCKETS: tuple[float, ...] = (
    1, 5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 21600,
)

# Names of the stored counters (labels in brackets): finished runs {job, status}, the
# histogram of the durations of RAN_STATUSES runs {job, le} and their sum {job}, failed
# notification deliveries {channel, ...}.
RUNS_COUNTER = "runs"
DURATION_BUCKET_COUNTER = "run_duration_bucket"
DURATION_SUM_COUNTER = "run_duration_sum"
NOTIFICATIONS_FAILED_COUNTER = "notifications_failed"

FINISHED_KEPT = 100_000  # the outbox: delivered or given-up items kept for `logs --run`, newest


def bucket_label(bound: float) -> str:
    """A bucket's `le` label as stored: "1", "21600", "+Inf"."""
    return "+Inf" if bound == float("inf") else format(bound, "g")


# -- errors -------------------------------------------------------------------------------------


class RunLogError(Exception):
    """Anything that went wrong with the run log, as one line a person can act on."""

    def __init__(self, message: str, *, full: bool = False, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.full = full  # SQLITE_FULL: the disk (or the database's page limit) is full
        self.code = code  # the SQLite error name, e.g. "SQLITE_BUSY", when there is one


class RunLogMissing(RunLogError):
    """A read-only open found no run log (or one no daemon has initialised yet)."""


# -- records ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Run:
    """One row of the run log."""

    id: int
    job: str
    trigger: Trigger
    attempt: int
    scheduled_for: float
    started_at: float | None
    finished_at: float | None
    status: RunStatus
    exit_code: int | None
    signal: int | None
    pid: int | None
    pid_start: float | None  # the process's create time, to tell a reused pid apart
    host: str
    boot_id: str
    reason: str | None
    cpu_s: float | None
    max_rss: int | None  # bytes
    output_truncated: bool | None  # None: no output was saved
    output_pruned: bool = False  # removed to keep the run log under --keep-size
    params: tuple[tuple[str, str], ...] = ()  # `cronsup run JOB --env K=V`, in order

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at


class RunMark(NamedTuple):
    """A run as a strip of recent runs shows it: what it is, how it ended, when."""

    id: int
    status: str
    started_at: float | None
    finished_at: float | None
    scheduled_for: float


@dataclass(frozen=True, slots=True)
class NewRun:
    """A run to record before its process starts (or a skipped/missed one that never will)."""

    job: str
    trigger: Trigger
    attempt: int
    scheduled_for: float
    status: RunStatus = RunStatus.RUNNING
    reason: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    params: tuple[tuple[str, str], ...] = ()
    # Several hosts (PostgreSQL; SQLite ignores these): the node of a `scope = "host"` job
    # ("" for the cluster's), the run's lease, and whether a running run of the job on any
    # node makes this one `skipped` (overlap = "skip", decided in the claiming transaction).
    node_key: str = ""
    lease: float | None = None
    exclusive: bool = False


@dataclass(frozen=True, slots=True)
class Backfill:
    """A `cronsup backfill` of one job: its range, how it was asked for, where it stands.

    state: "active" (slots left to start, or running), "done", "cancelled".
    """

    id: int
    job: str
    range_from: float
    range_to: float
    reprocess: str
    max_parallel: int
    created_at: float
    state: str
    ended_at: float | None
    slots: int  # slots to run
    skipped: int  # scheduled times in the range the reprocess policy left alone


@dataclass(frozen=True, slots=True)
class BackfillSlot:
    """One scheduled time a backfill runs: its first attempt's number, its run once recorded,
    and the status of the latest attempt at that time (retries included; None: not run yet)."""

    scheduled_for: float
    attempt: int
    run_id: int | None
    status: RunStatus | None = None


@dataclass(frozen=True, slots=True)
class DaemonState:
    """The one row describing the daemon that writes (or last wrote) this run log."""

    pid: int
    pid_start: float | None
    started_at: float
    stopped_at: float | None = None
    host: str = ""
    boot_id: str = ""
    jobs_file: str = ""
    config_error: str | None = None  # the last reload's error, shown by `status`
    last_seen: float | None = None  # the daemon's heartbeat


@dataclass(frozen=True, slots=True)
class GoodJobs:
    """The last jobs file the daemon loaded without errors, as the bytes it parsed: a restart
    that finds the file broken runs this instead of nothing."""

    path: str
    system: bool
    loaded_at: float
    source: bytes


@dataclass(frozen=True, slots=True)
class RunningVersion:
    """Which version of the jobs file the daemon runs. `origin`: "file" (loaded from the file
    at `loaded_at`), "run log" (the file was bad at start-up: the GoodJobs stored here,
    loaded from the file at `loaded_at`), "none" (bad at start-up and nothing stored)."""

    origin: str
    loaded_at: float | None
    jobs: int


@dataclass(frozen=True, slots=True)
class JobRow:
    """One of the daemon's current jobs, as `status` shows it."""

    name: str
    schedule: str
    command: str
    description: str
    next_run: float | None
    enabled: bool
    line: int
    retry_at: float | None = None  # a retry waiting to start, and which attempt it is
    retry_attempt: int | None = None
    retry_attempts: int | None = None  # retries + 1


class StoredCounter(NamedTuple):
    """A counter that only grows: pruning never touches it. `labels` sorted by name.

    A NamedTuple, not a dataclass: a scrape reads some 13,000 (a thousand jobs)."""

    name: str
    labels: tuple[tuple[str, str], ...]
    value: float


@dataclass(frozen=True, slots=True)
class JobSummary:
    """What metrics show of one job's runs, read for many jobs in one query."""

    last_started: float | None = None  # the latest run that started
    last_success: float | None = None  # when the latest successful run finished
    last_status: RunStatus | None = None  # of the latest run in RAN_STATUSES
    last_exit_code: int | None = None
    last_signal: int | None = None
    last_duration: float | None = None
    running: int = 0


@dataclass
class StoredHistory:
    """What the store remembers of some jobs, for the daemon's decisions at start-up.

    Read by `history(names, boot_id)` in a constant number of queries, whatever the number of jobs.
    """

    last_scheduled: dict[str, float] = field(default_factory=dict)  # schedule/catchup runs
    last_started: dict[str, float] = field(default_factory=dict)
    last_success: dict[str, float] = field(default_factory=dict)  # when it finished
    reboot_done: set[str] = field(default_factory=set)  # has a @reboot run in this boot


# -- alerts -------------------------------------------------------------------------------------

# Outbox states: waiting (or retrying), delivered, given up after its tries, dropped unsent
# because the outbox was full.
PENDING, DELIVERED, GAVE_UP, DROPPED = "pending", "delivered", "gave up", "dropped"


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One alert for one channel, as the outbox keeps it until it is delivered or given up."""

    run_id: int | None
    job: str
    event: str
    channel: str  # "webhook", "healthcheck", "command"
    target: str  # the URL, file:/path or command: a secret, never shown
    shown: str  # what may be shown of the target: scheme://host, "notify_command"
    payload: bytes  # JSON: what to send (the channel decides)
    created_at: float
    id: int | None = None
    state: str = PENDING
    tries: int = 0
    next_try: float | None = None


@dataclass(frozen=True, slots=True)
class DeliveryAttempt:
    """One try at delivering an outbox item, and what the other end answered."""

    item_id: int
    job: str
    channel: str
    shown: str
    at: float
    ok: bool
    answer: str  # "200 OK", "503 Service Unavailable", "no answer within 10s", "exit code 1"
    next_try: float | None  # None: no further try (delivered, or given up)


@dataclass(frozen=True, slots=True)
class Delivery:
    """An outbox item with its attempts, oldest first (for `logs --run`)."""

    item: OutboxItem
    attempts: tuple[DeliveryAttempt, ...]
