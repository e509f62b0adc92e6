"""The PostgreSQL store's backfills, its counters that never go down, and one-scrape snapshots."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from cronsup.model import RunStatus
from cronsup.store.postgres.schema import guarded
from cronsup.store.records import (
    DURATION_BUCKET_COUNTER,
    DURATION_BUCKETS,
    DURATION_SUM_COUNTER,
    RAN_STATUSES,
    RUNS_COUNTER,
    Backfill,
    BackfillSlot,
    JobSummary,
    NewRun,
    StoredCounter,
    bucket_label,
)

Bumps = dict[tuple[str, str], float]  # (name, labels as JSON) -> amount


def count_finished(bumps: Bumps, job: str, status: RunStatus, started_at: float | None,
                   finished_at: float | None) -> None:
    """A run's end, to be added in the transaction that ends it (as SQLite's _count_finished)."""
    _add(bumps, RUNS_COUNTER, {"job": job, "status": str(status)}, 1)
    if status in RAN_STATUSES and started_at is not None and finished_at is not None:
        duration = max(finished_at - started_at, 0.0)
        bound = next((b for b in DURATION_BUCKETS if duration <= b), float("inf"))
        _add(bumps, DURATION_BUCKET_COUNTER, {"job": job, "le": bucket_label(bound)}, 1)
        _add(bumps, DURATION_SUM_COUNTER, {"job": job}, duration)


def _add(bumps: Bumps, name: str, labels: dict[str, str], by: float) -> None:
    key = (name, json.dumps({k: str(labels[k]) for k in sorted(labels)}))
    bumps[key] = bumps.get(key, 0.0) + by


def apply_bumps(conn, bumps: Bumps) -> None:
    """Add up counters in one statement. Sorted: nodes ending runs at once lock the
    counter rows they share in one order, so they wait for each other, never deadlock."""
    if not bumps:
        return
    keys = sorted(bumps)
    conn.execute(
        "INSERT INTO counters (name, labels, value) SELECT n, l::jsonb, v FROM "
        "unnest(%s::text[], %s::text[], %s::float8[]) WITH ORDINALITY AS b(n, l, v, i) ORDER BY i "
        "ON CONFLICT (name, labels) DO UPDATE SET value = counters.value + EXCLUDED.value",
        ([k[0] for k in keys], [k[1] for k in keys], [bumps[k] for k in keys]))


def claim_slot(conn, new: NewRun, run_id: int | None) -> None:
    """A backfill slot's run, recorded with its claim: a restarted daemon never starts it
    again. A slot whose time and attempt were taken meanwhile gets the run that took them."""
    if run_id is None:
        row = conn.execute("SELECT id FROM runs WHERE job = %s AND scheduled_for = %s AND attempt = %s "
                           "AND node_key = %s", (new.job, new.scheduled_for, new.attempt, new.node_key)).fetchone()
        run_id = row[0] if row else None
    conn.execute(
        "UPDATE backfill_slots SET run_id = %s WHERE scheduled_for = %s AND run_id IS NULL AND "
        "backfill_id IN (SELECT id FROM backfills WHERE job = %s AND state = 'active')",
        (run_id, new.scheduled_for, new.job))


_BACKFILL_COLUMNS = (
    "b.id, b.job, b.range_from, b.range_to, b.reprocess, b.max_parallel, b.created_at, "
    "b.state, b.ended_at, (SELECT COUNT(*) FROM backfill_slots s WHERE s.backfill_id = b.id)::int, "
    "b.skipped"
)


class Ledger:
    """Backfills and counters of PostgresStore (a mixin; writes through Writes._transaction)."""

    _conn: Any

    # -- backfills ----------------------------------------------------------------------------

    @guarded
    def add_backfill(self, job: str, *, range_from: float, range_to: float, reprocess: str,
                     max_parallel: int, created_at: float, slots: Sequence[tuple[float, int]],
                     skipped: int) -> int:
        """Record a backfill and its (scheduled_for, attempt) slots in one transaction
        (committed before this returns), before any of them starts; its id."""
        with self._transaction() as conn:
            backfill_id = conn.execute(
                "INSERT INTO backfills (job, range_from, range_to, reprocess, max_parallel, "
                "created_at, state, skipped) VALUES (%s, %s, %s, %s, %s, %s, 'active', %s) RETURNING id",
                (job, range_from, range_to, reprocess, max_parallel, created_at, skipped)).fetchone()[0]
            conn.execute(
                "INSERT INTO backfill_slots (backfill_id, scheduled_for, attempt) "
                "SELECT %s, t, a FROM unnest(%s::float8[], %s::int[]) s(t, a)",
                (backfill_id, [t for t, _ in slots], [a for _, a in slots]))
        return backfill_id

    @guarded
    def end_backfill(self, backfill_id: int, state: str, ended_at: float) -> bool:
        """Mark an active backfill "done" or "cancelled"; False if it was not active."""
        if state not in ("done", "cancelled"):
            raise ValueError(f"a backfill ends done or cancelled, not {state!r}")
        with self._transaction() as conn:
            return conn.execute(
                "UPDATE backfills SET state = %s, ended_at = %s WHERE id = %s AND state = 'active'",
                (state, ended_at, backfill_id)).rowcount == 1

    @guarded
    def backfills(self, job: str | None = None, *, active: bool = False) -> list[Backfill]:
        """Backfills newest first: of one job or all, only active ones with `active`."""
        where, params = [], []
        if job is not None:
            where.append("b.job = %s")
            params.append(job)
        if active:
            where.append("b.state = 'active'")
        cond = f"WHERE {' AND '.join(where)}" if where else ""
        return [Backfill(*row) for row in self._conn.execute(
            f"SELECT {_BACKFILL_COLUMNS} FROM backfills b {cond} ORDER BY b.id DESC", params)]

    @guarded
    def backfill(self, backfill_id: int) -> Backfill | None:
        row = self._conn.execute(f"SELECT {_BACKFILL_COLUMNS} FROM backfills b WHERE b.id = %s",
                                 (backfill_id,)).fetchone()
        return None if row is None else Backfill(*row)

    @guarded
    def backfill_slots(self, backfill_id: int) -> list[BackfillSlot]:
        """A backfill's slots oldest first, each with the status of its latest attempt."""
        rows = self._conn.execute(
            "SELECT s.scheduled_for, s.attempt, s.run_id, "
            "(SELECT r.status FROM runs r WHERE r.job = b.job AND r.scheduled_for = s.scheduled_for "
            " AND r.attempt >= s.attempt ORDER BY r.attempt DESC, r.id DESC LIMIT 1) "
            "FROM backfill_slots s JOIN backfills b ON b.id = s.backfill_id "
            "WHERE s.backfill_id = %s ORDER BY s.scheduled_for", (backfill_id,)).fetchall()
        return [BackfillSlot(t, attempt, run_id, None if status is None or run_id is None
                             else RunStatus(status)) for t, attempt, run_id, status in rows]

    # -- counters and metrics (a scrape: a constant number of queries) -----------------------

    @guarded
    def add_counter(self, name: str, labels: dict[str, str], by: float = 1.0) -> None:
        """Add `by` to the counter `name` with these labels (created at 0)."""
        if not by >= 0:
            raise ValueError(f"a counter only grows: cannot add {by!r} to {name}")
        bumps: Bumps = {}
        _add(bumps, name, labels, by)
        with self._transaction() as conn:
            apply_bumps(conn, bumps)

    @guarded
    def counters(self) -> list[StoredCounter]:
        """Every stored counter, by name then labels."""
        found = []
        for name, labels, value in self._conn.execute("SELECT name, labels::text, value FROM counters"):
            try:
                pairs = tuple(sorted((str(k), str(v)) for k, v in json.loads(labels).items()))
            except (ValueError, AttributeError):
                continue  # not written by this store: ignored rather than failing a scrape
            found.append(StoredCounter(name, pairs, value))
        found.sort(key=lambda c: (c.name, c.labels))
        return found

    @guarded
    def job_summaries(self, jobs: Sequence[str]) -> dict[str, JobSummary]:
        """Each job's latest start, latest success, latest run that ran and running count,
        in one query (index seeks per job, whatever the history)."""
        found: dict[str, JobSummary] = {}
        for job, started, success, running, status, exit_code, sig, duration in self._conn.execute(
            "SELECT j.value, "
            "(SELECT started_at FROM runs WHERE job = j.value AND started_at IS NOT NULL "
            " ORDER BY id DESC LIMIT 1), "
            "(SELECT finished_at FROM runs WHERE job = j.value AND status = 'success' "
            " ORDER BY id DESC LIMIT 1), "
            "(SELECT COUNT(*) FROM runs WHERE job = j.value AND status = 'running')::int, "
            "r.status, r.exit_code, r.signal, r.finished_at - r.started_at "
            "FROM unnest(%s::text[]) j(value) LEFT JOIN LATERAL (SELECT * FROM runs "
            " WHERE job = j.value AND status = ANY(%s) ORDER BY id DESC LIMIT 1) r ON true",
            (list(jobs), [str(s) for s in RAN_STATUSES]),
        ):
            found[job] = JobSummary(
                last_started=started, last_success=success,
                last_status=None if status is None else RunStatus(status),
                last_exit_code=exit_code, last_signal=sig, last_duration=duration,
                running=running)
        return found

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Reads inside see one committed state: a REPEATABLE READ, READ ONLY transaction
        (one scrape sees one state while other nodes write). Nested, it adds nothing."""
        if self._in_transaction():
            yield
            return
        self._execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        try:
            yield
        finally:
            if self._in_transaction():
                self._execute("COMMIT")

    def _in_transaction(self) -> bool:
        from psycopg.pq import TransactionStatus

        conn = self._conn
        return conn is not None and not conn.closed and \
            conn.info.transaction_status != TransactionStatus.IDLE

    @guarded
    def _execute(self, sql: str) -> None:
        self._conn.execute(sql)
