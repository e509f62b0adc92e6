"""What a run store must do: the daemon's writes and the readers' queries, nothing of SQL.

SQLite (cronsup.store.sqlite) is the first store; a PostgreSQL one is another class that
passes tests/store_contract.py. Times are float epoch seconds; no method reads a clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from cronsup.model import RunStatus
from cronsup.store.records import (
    DaemonState,
    Delivery,
    DeliveryAttempt,
    GoodJobs,
    JobRow,
    NewRun,
    OutboxItem,
    Run,
    RunningVersion,
    StoredHistory,
)


class RunWriter(Protocol):
    """The daemon's side. Every method is one transaction; errors are RunLogError."""

    def insert_runs(self, runs: list[NewRun], *, host: str, boot_id: str) -> list[int | None]:
        """Claim fires: ids, None where (job, scheduled_for, attempt) was already taken.
        Durable when it returns."""

    def mark_started(self, run_id: int, pid: int, pid_start: float | None, started_at: float) -> bool: ...
    def mark_started_many(self, started: Iterable[tuple[int, int, float | None, float]]) -> int: ...
    def save_output(self, run_id: int, data: bytes, truncated: bool) -> None: ...

    def finish_run(self, run_id: int, status: RunStatus, *, finished_at: float,
                   exit_code: int | None = None, signal: int | None = None,
                   reason: str | None = None, cpu_s: float | None = None,
                   max_rss: int | None = None, output: tuple[bytes, bool] | None = None) -> bool:
        """Complete a running run; False and nothing written if it is not running (a second
        finish is ignored: the first result stays)."""

    def finish_runs_lost(self, run_ids: Iterable[int], reason: str, finished_at: float) -> int: ...
    def set_daemon(self, state: DaemonState) -> None: ...
    def update_daemon(self, **fields: Any) -> bool:
        """Some of config_error, last_seen (the heartbeat), stopped_at, jobs_file."""

    def set_jobs(self, rows: Sequence[JobRow]) -> None: ...
    def update_next_runs(self, next_runs: dict[str, float | None]) -> None: ...
    def update_retries(self, retries: dict[str, tuple[float, int, int] | None]) -> None: ...
    def set_paused(self, job: str, paused: bool, since: float) -> None: ...
    def set_good_jobs(self, good: GoodJobs) -> None: ...
    def set_running_version(self, version: RunningVersion) -> None: ...
    def set_kv(self, key: str, value: str | None) -> None: ...  # small daemon facts (error count)
    def prune(self, *, max_runs_per_job: int, max_age_s: float, now: float,
              max_output_bytes: int | None = None) -> int:
        """Delete old finished runs; never a running one, nor a job's newest run."""

    def prune_output(self, max_bytes: int) -> int: ...
    def checkpoint(self) -> bool: ...
    # The alerts' outbox (its sender may use a store of its own, in its own thread).
    def add_deliveries(self, items: Sequence[OutboxItem], max_pending: int) -> list[OutboxItem]:
        """Queue alerts; beyond `max_pending` waiting, drop the oldest: those are returned."""

    def due_deliveries(self, now: float, limit: int, skip: Sequence[int] = ()) -> list[OutboxItem]: ...
    def next_delivery_at(self, skip: Sequence[int] = ()) -> float | None: ...
    def pending_deliveries(self) -> int: ...
    def record_delivery(self, attempt: DeliveryAttempt, state: str) -> None:
        """An attempt and the item's new state (pending: again at attempt.next_try)."""

    def set_busy_timeout(self, seconds: float) -> None: ...
    def close(self) -> None: ...


class RunReader(Protocol):
    """The readers' side (status, logs, run --wait) and the daemon's start-up reads."""

    def daemon(self) -> DaemonState | None: ...
    def jobs(self) -> list[JobRow]: ...
    def paused(self) -> dict[str, float]: ...
    def good_jobs(self) -> GoodJobs | None: ...
    def running_version(self) -> RunningVersion | None: ...
    def get_kv(self, key: str, default: str | None = None) -> str | None: ...
    def running(self) -> list[Run]: ...
    def running_runs(self) -> list[Run]: ...
    def job_names(self) -> list[str]: ...
    def last_runs(self) -> dict[str, Run]: ...
    def runs(self, job: str, *, limit: int | None = 20, failed: bool = False,
             since: float | None = None, after_id: int | None = None,
             before_id: int | None = None) -> list[Run]:
        """A job's runs newest first; with `after_id`, those committed after it, oldest first."""

    def runs_of_all_jobs(self, *, limit: int | None = 20, failed: bool = False,
                         since: float | None = None, after_id: int | None = None) -> list[Run]: ...
    def follow(self, job: str | None, after_id: int, *, limit: int = 1000) -> list[Run]:
        """Runs recorded after `after_id` (of one job, or all), oldest first: called again
        with the last id seen, it returns every run exactly once."""

    def run(self, run_id: int) -> Run | None: ...
    def output(self, run_id: int) -> tuple[bytes, bool] | None: ...
    def retried_ok(self, runs: Sequence[Run]) -> dict[int, int]: ...
    def stats(self, job: str, n: int = 20) -> tuple[float | None, float | None]: ...
    def stats_many(self, jobs: Sequence[str], n: int = 20) -> dict[str, tuple[float | None, float | None]]:
        """`stats` of many jobs in a constant number of queries."""

    def last_finished(self, jobs: Sequence[str], skip: Sequence[RunStatus], *,
                      within: int = 50) -> dict[str, Run]:
        """Per job, the newest of its last `within` runs whose status is not in `skip`."""

    def history(self, jobs: Sequence[str], boot_id: str) -> StoredHistory:
        """What the daemon's start-up needs of these jobs, in a constant number of queries."""

    def deliveries(self, run_id: int) -> list[Delivery]:
        """A run's alerts with their attempts, oldest first."""

    def failing_channels(self) -> dict[str, list[DeliveryAttempt]]:
        """Per job, the latest attempt of each channel whose latest attempt failed."""


class RunStore(RunWriter, RunReader, Protocol):
    """A whole store: what `open_store` returns."""

    path: str  # where it is, for messages (a file path; later a URL without its password)
    readonly: bool

    def sibling(self) -> RunStore:
        """Another connection to the same store, for another thread of this process."""

    def __enter__(self) -> RunStore: ...
    def __exit__(self, *exc_info: object) -> None: ...
