"""The PostgreSQL run store's writes: claims, fenced run updates, leases, each node's state."""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from cronsup.model import RunStatus, Trigger
from cronsup.store.postgres.ledger import Bumps, apply_bumps, claim_slot, count_finished
from cronsup.store.postgres.schema import (
    _DAEMON_FIELDS,
    _DAEMON_UPDATABLE,
    _OUTPUT_PRUNED,
    DB_NOW,
    LOCK_INSERT,
    PRUNE_CLOCK_MARGIN,
    guarded,
)
from cronsup.store.records import DaemonState, JobRow, NewRun, Run, RunLogError
from cronsup.store.rows import empty_outputs, outputs_to_empty, pick_outputs


CLAIM_CHUNK = 50  # fires claimed per transaction when many are due at once


class Writes:
    """The daemon's side of PostgresStore (a mixin)."""

    path: str
    readonly: bool
    node: str
    owner: str
    lease: float

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        if self.readonly:
            raise RunLogError(f"run log {self.path} was opened read-only")
        conn = self._conn
        with conn.transaction():
            yield conn

    # -- claims ---------------------------------------------------------------------------

    def insert_runs(self, runs: list[NewRun], *, host: str, boot_id: str) -> list[int | None]:
        """Claim fires: ids, None where (job, scheduled_for, attempt) was already taken (by
        any node). A running run is claimed with this process's owner token and a lease.

        If the connection breaks around the commit, the claim is looked up by its token on a
        new connection: a claim that committed is ours, one that did not is not (never both).
        """
        if not runs:
            return []
        token = uuid.uuid4().hex
        if len(runs) <= CLAIM_CHUNK:
            return self._insert_or_find(runs, host, boot_id, token)
        # Many fires due at once: claimed in small transactions, in an order of this node's
        # own, so the nodes racing for them share them out instead of one taking them all.
        order = list(range(len(runs)))
        random.shuffle(order)
        ids: list[int | None] = [None] * len(runs)
        for at in range(0, len(order), CLAIM_CHUNK):
            part = order[at:at + CLAIM_CHUNK]
            try:
                got = self._insert_or_find([runs[i] for i in part], host, boot_id, token)
            except RunLogError:
                if at == 0:
                    raise
                break  # the first chunks are claimed (and start); the rest are not ours
            for i, run_id in zip(part, got):
                ids[i] = run_id
        return ids

    def _insert_or_find(self, runs: list[NewRun], host: str, boot_id: str, token: str) -> list[int | None]:
        try:
            return self._insert_runs(runs, host, boot_id, token)
        except RunLogError as first:
            if self.readonly or first.code not in (None, "timeout") and not str(first.code).startswith("08"):
                raise
            try:
                found = self._claimed(token)
            except RunLogError:
                raise first from None
            if not any((r.job, r.scheduled_for, r.attempt) in found for r in runs):
                raise
            seen: set[tuple] = set()
            ids: list[int | None] = []
            for new in runs:
                key = (new.job, new.scheduled_for, new.attempt)
                got = found.get(key)
                ids.append(got[0] if got and key not in seen and got[1] == str(new.status) else None)
                seen.add(key)
            return ids

    @guarded
    def _insert_runs(self, runs: list[NewRun], host: str, boot_id: str, token: str) -> list[int | None]:
        ids: list[int | None] = []
        with self._transaction() as conn:
            # Ids in commit order across nodes: follow() reads by id.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_INSERT,))
            # Overlap across nodes, decided under the lock: a job running on another node
            # (same node_key) makes an exclusive claim a `skipped` row. This process's own
            # runs are its supervisor's to weigh (as with SQLite): a run that ended here but
            # whose end is still queued, or a backfill's --max-parallel slots, are no overlap.
            wanted = [n.job for n in runs if n.exclusive and n.status is RunStatus.RUNNING]
            busy = {} if not wanted else {(job, key): host for job, key, host in conn.execute(
                "SELECT job, node_key, min(host) FROM runs WHERE status = 'running' AND job = ANY(%s) "
                "AND owner IS DISTINCT FROM %s GROUP BY job, node_key", (wanted, self.owner))}
            planned = []
            for new in runs:
                status, reason = new.status, new.reason
                holder = busy.get((new.job, new.node_key)) if new.exclusive else None
                if status is RunStatus.RUNNING and holder is not None:
                    status, reason = RunStatus.SKIPPED, f"still running on {holder}"
                planned.append((new, status, reason))
            # One round trip for the whole chunk (pipeline mode), not one per fire.
            with conn.pipeline():
                cursors = []
                for new, status, reason in planned:
                    running = status is RunStatus.RUNNING
                    lease = new.lease if new.lease is not None else self.lease
                    cursors.append(conn.execute(
                        "INSERT INTO runs (job, trigger, attempt, scheduled_for, started_at, "
                        "finished_at, status, host, boot_id, reason, claim, owner, node_key, lease_s, "
                        f"lease_until, params) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, "
                        f"CASE WHEN %s THEN {DB_NOW} + %s END, %s) "
                        "ON CONFLICT (job, scheduled_for, attempt, node_key) DO NOTHING "
                        "RETURNING id, started_at, finished_at",
                        (new.job, str(new.trigger), new.attempt, new.scheduled_for,
                         new.started_at if status is new.status else None,
                         new.finished_at if status is new.status else new.started_at, str(status),
                         host, boot_id, reason, token, self.owner, new.node_key, lease, running, lease,
                         json.dumps(dict(new.params)) if new.params else None)))
            bumps: Bumps = {}
            for (new, status, _), cur in zip(planned, cursors):
                row = cur.fetchone()
                ids.append(row[0] if row and status is new.status else None)
                if new.trigger == Trigger.BACKFILL:
                    claim_slot(conn, new, row[0] if row else None)
                if row and status is not RunStatus.RUNNING:  # a skipped or missed row ends here
                    count_finished(bumps, new.job, status, row[1], row[2])
            apply_bumps(conn, bumps)
        return ids

    @guarded
    def _claimed(self, token: str) -> dict[tuple, int]:
        return {(job, t, attempt): (run_id, status) for run_id, job, t, attempt, status in self._conn.execute(
            "SELECT id, job, scheduled_for, attempt, status FROM runs WHERE claim = %s", (token,))}

    # -- a run's life (fenced: only the owner that claimed a run writes to it) --------------

    @guarded
    def mark_started(self, run_id: int, pid: int, pid_start: float | None, started_at: float) -> bool:
        return self.mark_started_many([(run_id, pid, pid_start, started_at)]) == 1

    @guarded
    def mark_started_many(self, started: Iterable[tuple[int, int, float | None, float]]) -> int:
        """One statement for a burst's starts (one round trip, not one per run)."""
        rows = list(started)
        if not rows:
            return 0
        ids, pids, pid_starts, started_ats = (list(column) for column in zip(*rows))
        with self._transaction() as conn:
            return conn.execute(
                "UPDATE runs r SET pid = v.pid, pid_start = v.pid_start, started_at = v.started_at "
                "FROM unnest(%s::bigint[], %s::bigint[], %s::float8[], %s::float8[]) "
                "AS v(id, pid, pid_start, started_at) "
                "WHERE r.id = v.id AND r.status = 'running' AND r.owner = %s",
                (ids, pids, pid_starts, started_ats, self.owner),
            ).rowcount

    @guarded
    def save_output(self, run_id: int, data: bytes, truncated: bool) -> None:
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO outputs (run_id, truncated, data) SELECT id, %s, %s FROM runs "
                "WHERE id = %s AND owner = %s "
                "ON CONFLICT (run_id) DO UPDATE SET truncated = EXCLUDED.truncated, data = EXCLUDED.data",
                (int(bool(truncated)), bytes(data), run_id, self.owner),
            )

    @guarded
    def finish_run(self, run_id: int, status: RunStatus, *, finished_at: float,
                   exit_code: int | None = None, signal: int | None = None,
                   reason: str | None = None, cpu_s: float | None = None,
                   max_rss: int | None = None, output: tuple[bytes, bool] | None = None) -> bool:
        """Complete a running run this process owns; False (nothing written) if it is not
        running any more or another node took it over."""
        status = RunStatus(status)
        if status is RunStatus.RUNNING:
            raise ValueError("finish_run needs a finished status, not 'running'")
        with self._transaction() as conn:
            cur = conn.execute(
                "UPDATE runs SET status = %s, finished_at = %s, exit_code = %s, signal = %s, "
                "reason = %s, cpu_s = %s, max_rss = %s, lease_until = NULL "
                "WHERE id = %s AND status = 'running' AND owner = %s RETURNING job, started_at",
                (str(status), finished_at, exit_code, signal, reason, cpu_s, max_rss, run_id,
                 self.owner),
            )
            row = cur.fetchone()
            done = row is not None
            if done:
                bumps: Bumps = {}
                count_finished(bumps, row[0], status, row[1], finished_at)
                apply_bumps(conn, bumps)
            if output is not None and done:
                conn.execute(
                    "INSERT INTO outputs (run_id, truncated, data) VALUES (%s, %s, %s) "
                    "ON CONFLICT (run_id) DO UPDATE SET truncated = EXCLUDED.truncated, data = EXCLUDED.data",
                    (run_id, int(bool(output[1])), bytes(output[0])),
                )
        return done

    @guarded
    def finish_runs_lost(self, run_ids: Iterable[int], reason: str, finished_at: float) -> int:
        ids = list(run_ids)
        with self._transaction() as conn:
            jobs = [job for (job,) in conn.execute(
                "UPDATE runs SET status = 'lost', reason = %s, finished_at = %s, lease_until = NULL, owner = NULL "
                "WHERE id = ANY(%s) AND status = 'running' RETURNING job",
                (reason, finished_at, ids),
            ).fetchall()]
            bumps: Bumps = {}
            for job in jobs:
                count_finished(bumps, job, RunStatus.LOST, None, None)
            apply_bumps(conn, bumps)
        return len(jobs)

    # -- leases ---------------------------------------------------------------------------

    @guarded
    def heartbeat_runs(self, run_ids: Iterable[int]) -> set[int]:
        """Extend the lease of these runs of ours; the ids that are still ours."""
        ids = list(run_ids)
        if not ids:
            return set()
        with self._transaction() as conn:
            return {row[0] for row in conn.execute(
                f"UPDATE runs SET lease_until = {DB_NOW} + lease_s "
                "WHERE id = ANY(%s) AND status = 'running' AND owner = %s RETURNING id",
                (ids, self.owner))}

    @guarded
    def expire_leases(self, grace: float, reason: str) -> list[Run]:
        """Mark `lost` every running run (of any node) whose lease lapsed more than `grace`
        times its lease ago by the database's clock; the runs so marked (each is returned to
        one caller only: the UPDATE takes its row)."""
        from cronsup.store.postgres.reads import _RUN_COLUMNS, _run_from_row

        with self._transaction() as conn:
            rows = conn.execute(
                "WITH gone AS (UPDATE runs SET status = 'lost', reason = %s, "
                f"finished_at = {DB_NOW}, lease_until = NULL, owner = NULL WHERE status = 'running' "
                f"AND lease_until < {DB_NOW} - %s * lease_s RETURNING *) "
                f"SELECT {_RUN_COLUMNS.replace('r.', 'g.').replace('o.truncated', 'NULL::smallint')} "
                "FROM gone g ORDER BY g.id",
                (reason, grace),
            ).fetchall()
            lost = [_run_from_row(row) for row in rows]
            bumps: Bumps = {}
            for run in lost:  # counted once: the UPDATE gives each row to one node
                count_finished(bumps, run.job, RunStatus.LOST, None, None)
            apply_bumps(conn, bumps)
        return lost

    # -- this node's state ----------------------------------------------------------------

    @guarded
    def set_daemon(self, state: DaemonState) -> None:
        with self._transaction() as conn:
            cols = ", ".join(_DAEMON_FIELDS)
            conn.execute(
                f"INSERT INTO nodes (node, owner, db_seen, {cols}) VALUES (%s, %s, {DB_NOW}, "
                f"{', '.join(['%s'] * len(_DAEMON_FIELDS))}) ON CONFLICT (node) DO UPDATE SET "
                "owner = EXCLUDED.owner, db_seen = EXCLUDED.db_seen, "
                + ", ".join(f"{n} = EXCLUDED.{n}" for n in _DAEMON_FIELDS),
                (self.node, self.owner, *(getattr(state, n) for n in _DAEMON_FIELDS)),
            )

    @guarded
    def update_daemon(self, **fields: Any) -> bool:
        unknown = set(fields) - _DAEMON_UPDATABLE
        if unknown:
            raise TypeError(f"update_daemon: cannot update {', '.join(sorted(unknown))}")
        if not fields:
            return self.daemon() is not None
        names = sorted(fields)
        sets = [f"{n} = %s" for n in names]
        if "last_seen" in fields:
            sets.append(f"db_seen = {DB_NOW}")
        with self._transaction() as conn:
            cur = conn.execute(f"UPDATE nodes SET {', '.join(sets)} WHERE node = %s",
                               (*(fields[n] for n in names), self.node))
        return cur.rowcount == 1

    @guarded
    def set_node_facts(self, **facts: Any) -> None:
        """version and jobs_digest of this node, for `cronsup nodes`."""
        names = sorted(facts)
        with self._transaction() as conn:
            conn.execute(f"UPDATE nodes SET {', '.join(f'{n} = %s' for n in names)} WHERE node = %s",
                         (*(facts[n] for n in names), self.node))

    @guarded
    def set_jobs(self, rows: Sequence[JobRow], digests: dict[str, str] | None = None) -> None:
        with self._transaction() as conn:
            # Keep the digests set_digests gave, unless told new ones.
            kept = dict(conn.execute("SELECT name, digest FROM jobs WHERE node = %s", (self.node,)).fetchall())
            digests = {**kept, **getattr(self, "_digests", {}), **(digests or {})}
            conn.execute("DELETE FROM jobs WHERE node = %s", (self.node,))
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO jobs (node, position, name, schedule, command, description, "
                    "next_run, enabled, line, retry_at, retry_attempt, retry_attempts, digest) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    [(self.node, i, r.name, r.schedule, r.command, r.description, r.next_run,
                      bool(r.enabled), r.line, r.retry_at, r.retry_attempt, r.retry_attempts,
                      digests.get(r.name)) for i, r in enumerate(rows)],
                )

    @guarded
    def set_digests(self, digests: dict[str, str]) -> None:
        """Each of this node's jobs' definition digest (the cluster claims a job only where
        the nodes agree on it); also kept for the jobs set_jobs writes later."""
        self._digests = dict(digests)
        with self._transaction() as conn:
            conn.execute("UPDATE jobs SET digest = v.d FROM unnest(%s::text[], %s::text[]) v(name, d) "
                         "WHERE jobs.node = %s AND jobs.name = v.name",
                         (list(digests), list(digests.values()), self.node))

    # -- run requests (`cronsup run` from any host) -----------------------------------------

    @guarded
    def request_run(self, job: str, asked_by: str) -> int:
        with self._transaction() as conn:
            return conn.execute(f"INSERT INTO requests (job, asked_at, asked_by) VALUES (%s, {DB_NOW}, %s) "
                                "RETURNING id", (job, asked_by)).fetchone()[0]

    @guarded
    def take_requests(self, jobs: Sequence[str]) -> list[tuple[int, str]]:
        """Take the open requests for these jobs: (request id, job), each to one node only."""
        with self._transaction() as conn:
            return [tuple(row) for row in conn.execute(
                "UPDATE requests SET taken_by = %s WHERE id IN (SELECT id FROM requests WHERE "
                "taken_by IS NULL AND job = ANY(%s) ORDER BY id FOR UPDATE SKIP LOCKED) "
                "RETURNING id, job", (self.node, list(jobs)))]

    @guarded
    def cancel_request(self, request_id: int) -> bool:
        """Withdraw a request no node has taken; False if one took it meanwhile."""
        with self._transaction() as conn:
            return conn.execute("DELETE FROM requests WHERE id = %s AND taken_by IS NULL",
                                (request_id,)).rowcount == 1

    @guarded
    def answer_request(self, request_id: int, run_id: int | None) -> None:
        with self._transaction() as conn:
            conn.execute("UPDATE requests SET run_id = %s WHERE id = %s", (run_id if run_id else -1, request_id))

    @guarded
    def request(self, request_id: int) -> tuple[str | None, int | None]:
        """(the node that took it, the run it started: -1 for none) of a run request."""
        row = self._conn.execute("SELECT taken_by, run_id FROM requests WHERE id = %s", (request_id,)).fetchone()
        return (None, None) if row is None else (row[0], row[1])

    @guarded
    def update_next_runs(self, next_runs: dict[str, float | None]) -> None:
        if not next_runs:
            return
        with self._transaction() as conn:
            conn.execute(
                "UPDATE jobs SET next_run = v.t FROM unnest(%s::text[], %s::float8[]) v(name, t) "
                "WHERE jobs.node = %s AND jobs.name = v.name",
                (list(next_runs), list(next_runs.values()), self.node))

    @guarded
    def update_retries(self, retries: dict[str, tuple[float, int, int] | None]) -> None:
        if not retries:
            return
        names = list(retries)
        vals = [r if r is not None else (None, None, None) for r in retries.values()]
        with self._transaction() as conn:
            conn.execute(
                "UPDATE jobs SET retry_at = v.a, retry_attempt = v.b, retry_attempts = v.c FROM "
                "unnest(%s::text[], %s::float8[], %s::int[], %s::int[]) v(name, a, b, c) "
                "WHERE jobs.node = %s AND jobs.name = v.name",
                (names, [v[0] for v in vals], [v[1] for v in vals], [v[2] for v in vals], self.node))

    @guarded
    def set_paused(self, job: str, paused: bool, since: float) -> None:
        """Pauses are the cluster's: a job paused from any host is paused on all."""
        with self._transaction() as conn:
            if paused:
                conn.execute("INSERT INTO paused (job, since) VALUES (%s, %s) ON CONFLICT (job) DO NOTHING",
                             (job, since))
            else:
                conn.execute("DELETE FROM paused WHERE job = %s", (job,))

    @guarded
    def set_kv(self, key: str, value: str | None) -> None:
        with self._transaction() as conn:
            if value is None:
                conn.execute("DELETE FROM kv WHERE node = %s AND key = %s", (self.node, key))
            else:
                conn.execute("INSERT INTO kv (node, key, value) VALUES (%s, %s, %s) "
                             "ON CONFLICT (node, key) DO UPDATE SET value = EXCLUDED.value",
                             (self.node, key, value))

    # -- pruning --------------------------------------------------------------------------

    def prune(self, *, max_runs_per_job: int, max_age_s: float, now: float,
              max_output_bytes: int | None = None) -> int:
        """As SqliteStore.prune; any node may prune (it deletes only finished runs).

        Not one call: each job's deletes are a call (and a transaction) of their own, each
        bounded by the timeout. A thousand jobs over a network, or a backlog of a million
        old runs at a daemon's start, take longer in all than one call may."""
        if max_runs_per_job < 1:
            raise ValueError("max_runs_per_job must be at least 1")
        cutoff = self._prune_now(now) - max_age_s
        deleted = sum(self._prune_job(job, max_runs_per_job, cutoff) for job in self.job_names())
        if max_output_bytes is not None:
            self.prune_output(max_output_bytes)
        self._prune_finished_outbox()
        return deleted

    @guarded
    def _prune_now(self, now: float) -> float:
        """`now`, or a little after the newest run when the clock is far ahead of it."""
        (newest,) = self._conn.execute(
            "SELECT MAX(GREATEST(scheduled_for, COALESCE(started_at, scheduled_for))) FROM "
            "(SELECT scheduled_for, started_at FROM runs ORDER BY id DESC LIMIT 100) r").fetchone()
        if newest is not None and now > newest + PRUNE_CLOCK_MARGIN:
            return newest + PRUNE_CLOCK_MARGIN
        return now

    @guarded
    def _prune_job(self, job: str, max_runs_per_job: int, cutoff: float) -> int:
        with self._transaction() as conn:
            (top,) = conn.execute("SELECT MAX(id) FROM runs WHERE job = %s", (job,)).fetchone()
            row = conn.execute(
                "SELECT id FROM runs WHERE job = %s AND trigger IN ('schedule', 'catchup') "
                "ORDER BY scheduled_for DESC LIMIT 1", (job,)).fetchone()
            latest = row[0] if row else top
            spared = "status != 'running' AND id NOT IN (%s, %s)"
            row = conn.execute("SELECT id FROM runs WHERE job = %s ORDER BY id DESC LIMIT 1 OFFSET %s",
                               (job, max_runs_per_job - 1)).fetchone()
            deleted = 0
            if row is not None:
                deleted += conn.execute(
                    f"DELETE FROM runs WHERE job = %s AND id < %s AND {spared}",
                    (job, row[0], top, latest)).rowcount
            deleted += conn.execute(
                "DELETE FROM runs WHERE job = %s AND scheduled_for < %s "
                f"AND COALESCE(started_at, scheduled_for) < %s AND {spared}",
                (job, cutoff, cutoff, top, latest)).rowcount
        return deleted

    @guarded
    def _prune_finished_outbox(self) -> int:
        return self._prune_outbox()

    @guarded
    def output_bytes(self) -> int:
        return self._conn.execute("SELECT COALESCE(SUM(length(data)), 0) FROM outputs").fetchone()[0]

    def prune_output(self, max_bytes: int) -> int:
        """Empty the oldest outputs until they fit `max_bytes`: batches of 500, each a
        call of its own (bounded by the timeout, as prune's jobs)."""
        return empty_outputs(self.output_bytes() - max_bytes, self._outputs_to_empty, self._empty_outputs)

    @guarded
    def _outputs_to_empty(self, after: int, excess: int) -> tuple[int, list[int], int]:
        rows = self._conn.execute(outputs_to_empty("%s"), (after, _OUTPUT_PRUNED)).fetchall()
        return pick_outputs(rows, after, excess)

    @guarded
    def _empty_outputs(self, run_ids: list[int]) -> None:
        with self._transaction() as conn:
            conn.execute("UPDATE outputs SET data = ''::bytea, truncated = %s WHERE run_id = ANY(%s)",
                         (_OUTPUT_PRUNED, run_ids))

