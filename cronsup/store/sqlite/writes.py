"""The SQLite run log's writes: every one through the one transaction helper."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from cronsup.model import RunStatus, Trigger
from cronsup.store.records import (
    DURATION_BUCKET_COUNTER,
    DURATION_BUCKETS,
    DURATION_SUM_COUNTER,
    RAN_STATUSES,
    RUNS_COUNTER,
    DaemonState,
    JobRow,
    NewRun,
    RunLogError,
    bucket_label,
)
from cronsup.store.rows import empty_outputs, outputs_to_empty, pick_outputs
from cronsup.store.sqlite.schema import (
    _DAEMON_FIELDS,
    _DAEMON_UPDATABLE,
    _OUTPUT_PRUNED,
    PRUNE_CLOCK_MARGIN,
    _guarded,
    _placeholders,
)


class Writes:
    """The daemon's side of SqliteStore (a mixin: the connection is SqliteStore's)."""

    _conn: sqlite3.Connection
    path: str
    readonly: bool
    _synchronous: str

    # -- the one transaction helper -----------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any error. Every write goes through here.

        IMMEDIATE takes the write lock up front, so a busy database is waited for (busy
        timeout) at BEGIN instead of failing half-way through.
        """
        if self.readonly:
            raise RunLogError(f"run log {self.path} was opened read-only")
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            # SQLite may already have rolled back by itself (e.g. on SQLITE_FULL).
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            raise

    # -- writes -------------------------------------------------------------------------------

    @_guarded
    def insert_runs(self, runs: list[NewRun], *, host: str, boot_id: str) -> list[int | None]:
        """Record runs before their processes start: their ids, None where the key was taken.

        The key is (job, scheduled_for, attempt).

        One transaction, synced to disk (synchronous=FULL) before returning: once this returns,
        a restarted daemon sees these scheduled times as taken.
        """
        ids: list[int | None] = []
        if not runs:
            return ids
        self._conn.execute("PRAGMA synchronous=FULL")
        try:
            with self._transaction() as conn:
                for new in runs:
                    cur = conn.execute(
                        "INSERT INTO runs (job, trigger, attempt, scheduled_for, started_at, "
                        "finished_at, status, host, boot_id, reason, params) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                        "ON CONFLICT (job, scheduled_for, attempt) DO NOTHING",
                        (new.job, str(new.trigger), new.attempt, new.scheduled_for,
                         new.started_at, new.finished_at, str(new.status), host, boot_id,
                         new.reason, json.dumps(dict(new.params)) if new.params else None),
                    )
                    run_id = cur.lastrowid if cur.rowcount == 1 else None
                    ids.append(run_id)
                    if new.trigger == Trigger.BACKFILL:
                        self._claim_slot(conn, new, run_id)
                    if run_id is not None and new.status is not RunStatus.RUNNING:
                        _count_finished(conn, new.job, RunStatus(new.status), new.started_at,
                                        new.finished_at)
        finally:
            self._conn.execute(f"PRAGMA synchronous={self._synchronous}")
        return ids

    @staticmethod
    def _claim_slot(conn: sqlite3.Connection, new: NewRun, run_id: int | None) -> None:
        """A backfill slot's run, recorded with it: a restarted daemon never starts it again.
        A slot whose time and attempt were taken meanwhile gets the run that took them."""
        if run_id is None:
            row = conn.execute("SELECT id FROM runs WHERE job = ? AND scheduled_for = ? AND attempt = ?",
                               (new.job, new.scheduled_for, new.attempt)).fetchone()
            run_id = row[0] if row else None
        conn.execute(
            "UPDATE backfill_slots SET run_id = ? WHERE scheduled_for = ? AND run_id IS NULL AND "
            "backfill_id IN (SELECT id FROM backfills WHERE job = ? AND state = 'active')",
            (run_id, new.scheduled_for, new.job))

    @_guarded
    def add_backfill(self, job: str, *, range_from: float, range_to: float, reprocess: str,
                     max_parallel: int, created_at: float, slots: Sequence[tuple[float, int]],
                     skipped: int) -> int:
        """Record a backfill and its (scheduled_for, attempt) slots in one durable
        transaction, before any of them starts; its id."""
        self._conn.execute("PRAGMA synchronous=FULL")
        try:
            with self._transaction() as conn:
                cur = conn.execute(
                    "INSERT INTO backfills (job, range_from, range_to, reprocess, max_parallel, "
                    "created_at, state, skipped) VALUES (?, ?, ?, ?, ?, ?, 'active', ?)",
                    (job, range_from, range_to, reprocess, max_parallel, created_at, skipped))
                backfill_id = cur.lastrowid
                conn.executemany(
                    "INSERT INTO backfill_slots (backfill_id, scheduled_for, attempt) VALUES (?, ?, ?)",
                    ((backfill_id, t, attempt) for t, attempt in slots))
        finally:
            self._conn.execute(f"PRAGMA synchronous={self._synchronous}")
        return backfill_id

    @_guarded
    def end_backfill(self, backfill_id: int, state: str, ended_at: float) -> bool:
        """Mark an active backfill "done" or "cancelled"; False if it was not active."""
        if state not in ("done", "cancelled"):
            raise ValueError(f"a backfill ends done or cancelled, not {state!r}")
        with self._transaction() as conn:
            cur = conn.execute("UPDATE backfills SET state = ?, ended_at = ? WHERE id = ? AND state = 'active'",
                               (state, ended_at, backfill_id))
        return cur.rowcount == 1

    @_guarded
    def mark_started(
        self, run_id: int, pid: int, pid_start: float | None, started_at: float
    ) -> bool:
        """Record a running run's process; False if the run is not running."""
        return self.mark_started_many([(run_id, pid, pid_start, started_at)]) == 1

    @_guarded
    def mark_started_many(
        self, started: Iterable[tuple[int, int, float | None, float]]
    ) -> int:
        """mark_started for many runs in one transaction; returns how many were updated."""
        count = 0
        with self._transaction() as conn:
            for run_id, pid, pid_start, started_at in started:
                count += conn.execute(
                    "UPDATE runs SET pid = ?, pid_start = ?, started_at = ? "
                    "WHERE id = ? AND status = 'running'",
                    (pid, pid_start, started_at, run_id),
                ).rowcount
        return count

    @_guarded
    def save_output(self, run_id: int, data: bytes, truncated: bool) -> None:
        """Store (replace) a run's captured output."""
        with self._transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO outputs (run_id, truncated, data) VALUES (?, ?, ?)",
                (run_id, int(bool(truncated)), bytes(data)),
            )

    @_guarded
    def finish_run(
        self,
        run_id: int,
        status: RunStatus,
        *,
        finished_at: float,
        exit_code: int | None = None,
        signal: int | None = None,
        reason: str | None = None,
        cpu_s: float | None = None,
        max_rss: int | None = None,
        output: tuple[bytes, bool] | None = None,
    ) -> bool:
        """Complete a running run, with its final output if given, in one transaction;
        False (nothing written) if it is not running any more."""
        status = RunStatus(status)
        if status is RunStatus.RUNNING:
            raise ValueError("finish_run needs a finished status, not 'running'")
        with self._transaction() as conn:
            row = conn.execute(
                "UPDATE runs SET status = ?, finished_at = ?, exit_code = ?, signal = ?, "
                "reason = ?, cpu_s = ?, max_rss = ? WHERE id = ? AND status = 'running' "
                "RETURNING job, started_at",
                (str(status), finished_at, exit_code, signal, reason, cpu_s, max_rss, run_id),
            ).fetchall()  # all: a RETURNING statement left unfinished would hold the COMMIT
            row = row[0] if row else None
            if row is not None:
                _count_finished(conn, row[0], status, row[1], finished_at)
            if output is not None and row is not None:
                conn.execute(
                    "INSERT OR REPLACE INTO outputs (run_id, truncated, data) VALUES (?, ?, ?)",
                    (run_id, int(bool(output[1])), bytes(output[0])),
                )
        return row is not None

    @_guarded
    def finish_runs_lost(self, run_ids: Iterable[int], reason: str, finished_at: float) -> int:
        """Mark runs whose end is unknown as `lost`; returns how many were still running."""
        count = 0
        with self._transaction() as conn:
            for run_id in run_ids:
                row = conn.execute(
                    "UPDATE runs SET status = 'lost', reason = ?, finished_at = ? "
                    "WHERE id = ? AND status = 'running' RETURNING job",
                    (reason, finished_at, run_id),
                ).fetchall()
                if row:
                    count += 1
                    _count_finished(conn, row[0][0], RunStatus.LOST, None, None)
        return count

    @_guarded
    def set_daemon(self, state: DaemonState) -> None:
        """Replace the daemon row (at daemon start)."""
        with self._transaction() as conn:
            conn.execute(
                f"INSERT OR REPLACE INTO daemon (id, {', '.join(_DAEMON_FIELDS)}) "
                f"VALUES (1, {_placeholders(len(_DAEMON_FIELDS))})",
                tuple(getattr(state, name) for name in _DAEMON_FIELDS),
            )

    @_guarded
    def update_daemon(self, **fields: Any) -> bool:
        """Update some of config_error, last_seen, stopped_at, jobs_file; False if no daemon row."""
        unknown = set(fields) - _DAEMON_UPDATABLE
        if unknown:
            raise TypeError(f"update_daemon: cannot update {', '.join(sorted(unknown))}")
        if not fields:
            return self.daemon() is not None
        names = sorted(fields)
        with self._transaction() as conn:
            cur = conn.execute(
                f"UPDATE daemon SET {', '.join(f'{n} = ?' for n in names)} WHERE id = 1",
                tuple(fields[n] for n in names),
            )
        return cur.rowcount == 1

    @_guarded
    def set_jobs(self, rows: Sequence[JobRow]) -> None:
        """Replace the daemon's current jobs, kept in the order given."""
        with self._transaction() as conn:
            conn.execute("DELETE FROM jobs")
            conn.executemany(
                "INSERT INTO jobs (position, name, schedule, command, description, next_run, "
                "enabled, line, retry_at, retry_attempt, retry_attempts) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    (i, r.name, r.schedule, r.command, r.description, r.next_run,
                     int(bool(r.enabled)), r.line, r.retry_at, r.retry_attempt, r.retry_attempts)
                    for i, r in enumerate(rows)
                ),
            )

    @_guarded
    def update_next_runs(self, next_runs: dict[str, float | None]) -> None:
        """Set the next run of some of the jobs, leaving the others as they are."""
        with self._transaction() as conn:
            conn.executemany("UPDATE jobs SET next_run = ? WHERE name = ?",
                             [(t, name) for name, t in next_runs.items()])

    @_guarded
    def update_retries(self, retries: dict[str, tuple[float, int, int] | None]) -> None:
        """Set (retry_at, attempt, attempts) or None for some of the jobs."""
        with self._transaction() as conn:
            conn.executemany(
                "UPDATE jobs SET retry_at = ?, retry_attempt = ?, retry_attempts = ? WHERE name = ?",
                [(*(r if r is not None else (None, None, None)), name) for name, r in retries.items()])

    @_guarded
    def set_paused(self, job: str, paused: bool, since: float) -> None:
        """Pause (keeping the first `since` if already paused) or resume a job."""
        with self._transaction() as conn:
            if paused:
                conn.execute(
                    "INSERT INTO paused (job, since) VALUES (?, ?) ON CONFLICT (job) DO NOTHING",
                    (job, since),
                )
            else:
                conn.execute("DELETE FROM paused WHERE job = ?", (job,))

    @_guarded
    def set_kv(self, key: str, value: str | None) -> None:
        """Store a small string (None deletes it)."""
        with self._transaction() as conn:
            if value is None:
                conn.execute("DELETE FROM kv WHERE key = ?", (key,))
            else:
                conn.execute("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", (key, value))

    @_guarded
    def add_counter(self, name: str, labels: dict[str, str], by: float = 1.0) -> None:
        """Add `by` to the counter `name` with these labels (created at 0)."""
        if not by >= 0:
            raise ValueError(f"a counter only grows: cannot add {by!r} to {name}")
        with self._transaction() as conn:
            _bump(conn, name, labels, by)

    @_guarded
    def prune(self, *, max_runs_per_job: int, max_age_s: float, now: float,
              max_output_bytes: int | None = None) -> int:
        """Delete old finished runs and their output; returns how many runs were deleted.

        Per job, keeps the newest `max_runs_per_job` runs (by id) and drops finished runs
        whose scheduled time (and start, if any) is older than `max_age_s` before the
        earlier of `now` and the newest run's time plus PRUNE_CLOCK_MARGIN (a clock that
        jumped ahead does not age the history). Never deletes a running run, nor a job's
        newest run or its latest schedule/catchup run: the latter is what `last_scheduled`
        and catch-up count from after a restart. With `max_output_bytes`, then removes the
        oldest finished runs' output (see prune_output).
        """
        if max_runs_per_job < 1:
            raise ValueError("max_runs_per_job must be at least 1")
        newest = self._newest_time()
        if newest is not None and now > newest + PRUNE_CLOCK_MARGIN:
            now = newest + PRUNE_CLOCK_MARGIN
        deleted = 0
        for job in self.job_names():
            # One short transaction per job keeps the write lock and the -wal file small.
            with self._transaction() as conn:
                deleted += self._prune_job(conn, job, max_runs_per_job, now - max_age_s)
        if max_output_bytes is not None:
            self.prune_output(max_output_bytes)
        self._prune_outbox()
        return deleted

    @staticmethod
    def _prune_job(conn: sqlite3.Connection, job: str, keep_n: int, cutoff: float) -> int:
        # Outputs go with their runs through ON DELETE CASCADE (foreign_keys is on).
        (newest,) = conn.execute("SELECT MAX(id) FROM runs WHERE job = ?", (job,)).fetchone()
        row = conn.execute(
            "SELECT id FROM runs WHERE job = ? AND trigger IN ('schedule', 'catchup') "
            "ORDER BY scheduled_for DESC LIMIT 1",
            (job,),
        ).fetchone()
        latest_scheduled = row[0] if row else newest
        spared = "status != 'running' AND id NOT IN (?, ?)"
        count = 0
        row = conn.execute(
            "SELECT id FROM runs WHERE job = ? ORDER BY id DESC LIMIT 1 OFFSET ?",
            (job, keep_n - 1),
        ).fetchone()
        if row is not None:  # beyond the newest keep_n
            count += conn.execute(
                f"DELETE FROM runs WHERE job = ? AND id < ? AND {spared}",
                (job, row[0], newest, latest_scheduled),
            ).rowcount
        # Too old: found through the unique index's (job, scheduled_for) prefix.
        count += conn.execute(
            "DELETE FROM runs WHERE job = ? AND scheduled_for < ? "
            f"AND COALESCE(started_at, scheduled_for) < ? AND {spared}",
            (job, cutoff, cutoff, newest, latest_scheduled),
        ).rowcount
        return count

    def _newest_time(self) -> float | None:
        """The latest scheduled or start time among the most recently recorded runs.

        Not finished_at: recovery marks lost runs finished at the (maybe jumped) time now.
        """
        (t,) = self._conn.execute(
            "SELECT MAX(MAX(scheduled_for, IFNULL(started_at, scheduled_for))) FROM "
            "(SELECT scheduled_for, started_at FROM runs ORDER BY id DESC LIMIT 100)"
        ).fetchone()
        return t

    @_guarded
    def output_bytes(self) -> int:
        """Bytes of captured output stored, of all runs."""
        # length() of a BLOB reads the record header, not the blob's overflow pages.
        return self._conn.execute("SELECT IFNULL(SUM(length(data)), 0) FROM outputs").fetchone()[0]

    @_guarded
    def prune_output(self, max_bytes: int) -> int:
        """Remove the output of the oldest finished runs until all output fits `max_bytes`.

        The runs stay; their output is marked as pruned (`Run.output_pruned`). A running
        run's output is never removed. Returns how many outputs were removed.
        """
        def batch(after: int, excess: int) -> tuple[int, list[int], int]:
            rows = self._conn.execute(outputs_to_empty("?"), (after, _OUTPUT_PRUNED)).fetchall()
            return pick_outputs(rows, after, excess)

        def empty(run_ids: list[int]) -> None:
            with self._transaction() as conn:
                conn.execute(f"UPDATE outputs SET data = x'', truncated = ? WHERE run_id IN "
                             f"({_placeholders(len(run_ids))})", (_OUTPUT_PRUNED, *run_ids))

        return empty_outputs(self.output_bytes() - max_bytes, batch, empty)


def _bump(conn: sqlite3.Connection, name: str, labels: dict[str, str], by: float) -> None:
    keys = sorted(labels)
    # json_object() in SQL, as the migration that seeded the counters made their keys.
    conn.execute(
        "INSERT INTO counters (name, labels, value) VALUES "
        f"(?, json_object({', '.join(['?, ?'] * len(keys))}), ?) "
        "ON CONFLICT (name, labels) DO UPDATE SET value = value + excluded.value",
        (name, *(x for k in keys for x in (k, str(labels[k]))), by),
    )


def _count_finished(conn: sqlite3.Connection, job: str, status: RunStatus,
                    started_at: float | None, finished_at: float | None) -> None:
    """A run's end, counted in its own transaction: kept when the run is pruned."""
    _bump(conn, RUNS_COUNTER, {"job": job, "status": str(status)}, 1)
    if status in RAN_STATUSES and started_at is not None and finished_at is not None:
        duration = max(finished_at - started_at, 0.0)
        bound = next((b for b in DURATION_BUCKETS if duration <= b), float("inf"))
        _bump(conn, DURATION_BUCKET_COUNTER, {"job": job, "le": bucket_label(bound)}, 1)
        _bump(conn, DURATION_SUM_COUNTER, {"job": job}, duration)
