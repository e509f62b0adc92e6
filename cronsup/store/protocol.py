"""What a run store must do: the daemon's writes and the readers' queries, nothing of SQL.

SQLite (cronsup.store.sqlite) is the first store; PostgreSQL (cronsup.store.postgres) is
another class that passes tests/store_contract.py, and a ClusterStore (below) for several hosts. Times are float epoch seconds; no method reads a clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from cronsup.model import RunStatus
from cronsup.store.records import (
    Backfill,
    BackfillSlot,
    DaemonState,
    Delivery,
    DeliveryAttempt,
    GoodJobs,
    JobRow,
    JobSummary,
    NewRun,
    OutboxItem,
    Run,
    RunMark,
    RunningVersion,
    StoredCounter,
    StoredHistory,
)


class RunWriter(Protocol):
    """The daemon's side. Every method is one transaction; errors are RunLogError."""

    def insert_runs(self, runs: list[NewRun], *, host: str, boot_id: str) -> list[int | None]:
        """Claim fires: ids, None where (job, scheduled_for, attempt) was already taken.
        Durable when it returns."""

    def add_backfill(self, job: str, *, range_from: float, range_to: float, reprocess: str,
                     max_parallel: int, created_at: float, slots: Sequence[tuple[float, int]],
                     skipped: int) -> int:
        """Record a backfill and its (scheduled_for, attempt) slots, durably, before any
        starts. insert_runs of a `backfill` run sets its slot's run_id in the same transaction."""

    def end_backfill(self, backfill_id: int, state: str, ended_at: float) -> bool: ...
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
    def add_counter(self, name: str, labels: dict[str, str], by: float = 1.0) -> None:
        """Add `by` (>= 0) to a counter kept for good (pruning never touches counters).

        Finishing a run (finish_run, finish_runs_lost, a finished row of insert_runs) adds
        to "runs" {job, status} and, for RAN_STATUSES runs, to the duration histogram, in
        the same transaction."""

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
    def last_runs(self, jobs: Sequence[str] | None = None) -> dict[str, Run]:
        """The latest run (finished or not) of every job that has runs; with `jobs`, of
        those of `jobs` that have runs (an index seek a job, whatever else the log holds)."""

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

    def backfills(self, job: str | None = None, *, active: bool = False) -> list[Backfill]: ...
    def backfill(self, backfill_id: int) -> Backfill | None: ...
    def backfill_slots(self, backfill_id: int) -> list[BackfillSlot]: ...
    def runs_scheduled_between(self, job: str, start: float, end: float) -> list[Run]:
        """Runs with start <= scheduled_for < end, by scheduled time then attempt."""

    def counters(self) -> list[StoredCounter]:
        """Every counter, in one query."""

    def job_summaries(self, jobs: Sequence[str]) -> dict[str, JobSummary]:
        """Latest start, success and ran run, and running count of each job, in one query."""

    def snapshot(self) -> AbstractContextManager[None]:
        """A context in which every read sees the same committed state (one scrape)."""

    # -- the web view's reads --
    def recent_marks_many(self, jobs: Sequence[str], n: int = 30,
                          after: dict[str, int] | None = None) -> dict[str, list[RunMark]]:
        """Each job's last `n` runs, newest first, as RunMarks, in a constant number of queries;
        with `after`, only those of ids above the job's there (what came since a look)."""

    def runs_by_id(self, run_ids: Sequence[int]) -> dict[int, Run]:
        """The runs of these ids (ids of no run left out), in a constant number of queries."""

    def newest_ids(self, jobs: Sequence[str]) -> dict[str, int]:
        """Each job's highest run id (jobs without runs left out), in a constant number of queries."""

    def runs_filtered(self, job: str | None, *, statuses: Sequence[RunStatus] | None = None,
                      since: float | None = None, until: float | None = None,
                      before_id: int | None = None, limit: int = 50) -> list[Run]:
        """Runs of a job (None: all) newest first, by status and start time in [since, until)."""

    def output_part(self, run_id: int, offset: int, size: int) -> tuple[bytes, int, bool] | None:
        """Part of a run's output: (bytes, whole length, truncated); None if none was saved."""

    def superseded(self, runs: Sequence[Run]) -> set[int]:
        """Ids of those runs that a later attempt of the same fire followed."""
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


class ClusterStore(RunStore, Protocol):
    """A store several daemons (nodes) share: PostgreSQL (cronsup.store.postgres). `cluster`
    is True; the daemon uses these only then (cronsup/cluster.py). Runs it claims carry this
    process's owner token: finish_run, mark_started and save_output of a run another node
    took over write nothing. tests/test_store_postgres.py tests them."""

    cluster: bool
    node: str
    timeout: float  # seconds a call may wait for an answer

    def db_now(self) -> float:
        """The database's clock: every node schedules and leases by it."""

    def heartbeat_runs(self, run_ids: Iterable[int]) -> set[int]:
        """Extend these runs' leases; the ids still this process's."""

    def expire_leases(self, grace: float, reason: str) -> list[Run]:
        """Mark `lost` the running runs whose lease lapsed `grace` leases ago; each is
        returned to one caller only."""

    def nodes(self) -> list[dict[str, Any]]: ...
    def job_digests(self) -> dict[str, dict[str, str | None]]: ...
    def set_digests(self, digests: dict[str, str]) -> None: ...
    def set_node_facts(self, **facts: Any) -> None: ...
    def request_run(self, job: str, asked_by: str) -> int: ...
    def take_requests(self, jobs: Sequence[str]) -> list[tuple[int, str]]: ...
    def answer_request(self, request_id: int, run_id: int | None) -> None: ...
    def cancel_request(self, request_id: int) -> bool: ...
    def request(self, request_id: int) -> tuple[str | None, int | None]: ...
