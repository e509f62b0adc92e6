"""The records a run store holds and hands out: plain dataclasses, no storage code.

Every store (SQLite today) takes and returns these; readers (status, logs, run --wait) and
the daemon see nothing else of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at


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
