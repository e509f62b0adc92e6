"""Shared value types: jobs, schedules, policies, run statuses. Imports nothing from cronsup."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple


class Now(NamedTuple):
    """An instant as both clocks read it: the wall clock decides what is due, the
    monotonic clock measures timeouts and delays, and the two together reveal jumps."""

    wall: float  # seconds since the epoch (clock.wall)
    mono: float  # seconds on the monotonic clock (clock.mono)


class Overlap(StrEnum):
    """What happens when a run comes due while the job's last run is still running."""

    SKIP = "skip"  # record a `skipped` run and do not start it
    QUEUE = "queue"  # start it when the running one ends; at most one waits
    ALLOW = "allow"  # start it anyway, side by side
    REPLACE = "replace"  # kill the running one's whole tree, then start


class Scope(StrEnum):
    """Where a job runs when several hosts share a PostgreSQL run log."""

    CLUSTER = "cluster"  # each scheduled time on exactly one host
    HOST = "host"  # on every host (log rotation, local cleanup)


class OnLost(StrEnum):
    """What happens to a run whose host stopped heartbeating (PostgreSQL run log)."""

    MARK = "mark"  # record it `lost`
    RETRY = "retry"  # record it `lost` and run it again on another host


class Catchup(StrEnum):
    """What happens to fires that came due while the daemon was down."""

    NONE = "none"  # record each as a `missed` run
    LAST = "last"  # run the latest one once, record the rest as missed
    ALL = "all"  # run each of them, oldest first, at most 100


class MailOn(StrEnum):
    """When a job with a mailto gets mail."""

    OUTPUT = "output"  # cron's rule: the run printed something
    FAILURE = "failure"  # final failures only, with their output
    ALWAYS = "always"  # every final outcome
    NEVER = "never"


class RunStatus(StrEnum):
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"  # exited with a code outside success_codes
    TIMEOUT = "timeout"  # killed by cronsup after `timeout`
    KILLED = "killed"  # ended by a signal cronsup did not send (or by overlap=replace)
    SKIPPED = "skipped"  # not started: the previous run was still running (overlap=skip)
    LOST = "lost"  # the daemon stopped while it ran; its end is unknown
    MISSED = "missed"  # came due while the daemon was down and catchup did not run it
    ERROR = "error"  # could not be started: bad user, shell, workdir

    @property
    def finished(self) -> bool:
        return self is not RunStatus.RUNNING


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a run ended, decided once (by the supervisor) and told to every receiver.

    `final`: no retry follows (it succeeded, or its last attempt failed, or it never ran);
    otherwise `retry_at` is the wall time the next attempt is due.
    """

    status: RunStatus
    reason: str | None = None
    final: bool = True
    retry_at: float | None = None
    follow: tuple = field(default=(), compare=False)  # the supervisor's next actions


class Trigger(StrEnum):
    SCHEDULE = "schedule"
    RETRY = "retry"
    AFTER = "after"
    MANUAL = "manual"
    CATCHUP = "catchup"
    REBOOT = "reboot"
    BACKFILL = "backfill"  # `cronsup backfill`: one of the job's scheduled times, run late


@dataclass(frozen=True, slots=True)
class Cron:
    """Five cron fields, expanded. Weekdays are 0-6 with 0 = Sunday."""

    text: str  # as written: "0 2 * * *" or "@daily"
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: tuple[int, ...]
    months: tuple[int, ...]
    weekdays: tuple[int, ...]
    # Debian cron: when either day field starts with '*', a day must match both
    # (AND); when both are restricted, either one is enough (OR).
    day_or: bool
    # Debian cron: a job whose minute or hour field starts with '*' follows the wall
    # clock through DST changes; any other job is "fixed-time" and runs once.
    wildcard: bool


@dataclass(frozen=True, slots=True)
class Every:
    """`@every DURATION`: at fixed intervals counted from the daemon's start."""

    text: str
    seconds: float


@dataclass(frozen=True, slots=True)
class AfterJobs:
    """`@after`: runs when every job in `after` has succeeded since it last started."""

    text: str = "@after"


@dataclass(frozen=True, slots=True)
class Reboot:
    """`@reboot`: once per boot of the machine, not once per daemon start."""

    text: str = "@reboot"


Schedule = Cron | Every | AfterJobs | Reboot


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One job of the jobs file, with every option resolved to a typed value."""

    name: str
    schedule: Schedule
    command: str  # what `shell -c` runs: the text before the first unescaped %
    line: int = field(compare=False)  # 1-based line of the schedule line in the jobs file
    raw_command: str = ""  # the command as written, with its % and \% escapes
    stdin: str | None = None  # the text after the first unescaped %, % turned to newlines
    # Environment lines in effect for this job, in file order, then the `env` option.
    environment: tuple[tuple[str, str], ...] = ()
    description: str = ""
    timeout: float | None = None
    kill_grace: float = 10.0
    overlap: Overlap = Overlap.SKIP
    retries: int = 0
    retry_delay: float = 30.0
    retry_backoff: float = 2.0
    retry_max_delay: float = 3600.0
    retry_jitter: bool = True
    success_codes: tuple[int, ...] = (0,)
    after: tuple[str, ...] = ()
    workdir: str | None = None  # None: the user's home
    user: str | None = None  # None: the daemon's user
    shell: str = "/bin/sh"  # the option, else SHELL=, else /bin/sh
    timezone: str | None = None  # the option, else CRON_TZ=, else None for the system zone
    jitter: float = 0.0
    catchup: Catchup = Catchup.NONE
    output_limit: int = 1024 * 1024
    mailto: str | None = None  # the option, else MAILTO=; "" or None: no mail
    enabled: bool = True
    # Several hosts on one PostgreSQL run log (ignored with SQLite): None is "cluster" there.
    scope: Scope | None = None
    hosts: tuple[str, ...] = ()  # the node names that may run it; () for any
    on_lost: OnLost = OnLost.MARK
    lease: float = 30.0  # a running run stays its host's this long without a heartbeat
    # Alerts (SPEC section 4): URLs are "https://..." or "file:/path" (the URL read from it).
    notify_on: tuple[str, ...] = ("failure", "recovery")
    webhook: tuple[str, ...] = ()
    webhook_secret_file: str | None = None
    healthcheck: str | None = None
    notify_command: str | None = None
    mail_on: MailOn = MailOn.OUTPUT
    auto_named: bool = field(default=True, compare=False)  # name derived from the command

    @property
    def schedule_text(self) -> str:
        return self.schedule.text

    @property
    def env(self) -> dict[str, str]:
        return dict(self.environment)


@dataclass(frozen=True, slots=True)
class JobsfileWarning:
    """Something in a valid jobs file that is probably not what was meant (the file still
    loads): printed by `check` and logged by the daemon as FILE:LINE: warning: message."""

    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: warning: {self.message}"


@dataclass(frozen=True, slots=True)
class JobsFile:
    """A parsed, validated jobs file."""

    path: str
    jobs: tuple[JobSpec, ...]
    warnings: tuple[JobsfileWarning, ...] = ()  # in line order
    source: bytes = field(default=b"", repr=False, compare=False)  # the bytes parsed
    # The [cron] block: options for the jobs of cron's own files (daemon --cron), typed.
    cron_options: dict = field(default_factory=dict, compare=False)

    def get(self, name: str) -> JobSpec | None:
        for job in self.jobs:
            if job.name == name:
                return job
        return None

    @property
    def names(self) -> list[str]:
        return [job.name for job in self.jobs]
