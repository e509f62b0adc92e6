"""The SQLite run log's queries: what status, logs and the daemon's start-up read."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from cronsup.model import RunStatus
from cronsup.store.rows import outcomes, rate_and_median, run_from_row as _run_from_row, run_range
from cronsup.store.records import (
    FAILED_STATUSES,
    RAN_STATUSES,
    Backfill,
    BackfillSlot,
    DaemonState,
    JobRow,
    JobSummary,
    Run,
    StoredCounter,
    StoredHistory,
)
from cronsup.store.sqlite.schema import (
    _DAEMON_FIELDS,
    _guarded,
    _placeholders,
)

_RUN_COLUMNS = (
    "r.id, r.job, r.trigger, r.attempt, r.scheduled_for, r.started_at, r.finished_at, "
    "r.status, r.exit_code, r.signal, r.pid, r.pid_start, r.host, r.boot_id, r.reason, "
    "r.cpu_s, r.max_rss, o.truncated, r.params"
)
_RUN_FROM = "runs r LEFT JOIN outputs o ON o.run_id = r.id"
_SELECT_RUNS = f"SELECT {_RUN_COLUMNS} FROM {_RUN_FROM}"

# The distinct job names of `runs`, found by hopping through an index (one seek per job)
# instead of reading a million index entries.
_JOB_NAMES_CTE = """
WITH RECURSIVE names(job) AS (
    SELECT (SELECT job FROM runs ORDER BY job LIMIT 1)
    UNION ALL
    SELECT (SELECT r.job FROM runs r WHERE r.job > names.job ORDER BY r.job LIMIT 1)
    FROM names WHERE names.job IS NOT NULL
)
"""

_NO_ID = 2**63 - 1  # above every run id: no bound


def _label_pairs(text: str) -> tuple[tuple[str, str], ...] | None:
    try:
        return tuple(sorted((str(k), str(v)) for k, v in json.loads(text).items()))
    except (ValueError, AttributeError):
        return None  # not written by this store: ignored rather than failing a scrape


def _rate_and_median(rows: list[tuple[str, float | None, float]], n: int) -> tuple[float | None, float | None]:
    """stats() from a job's (status, duration, scheduled_for) rows, newest first."""
    return rate_and_median(*outcomes(rows, n))


class Reads:
    """The readers' side of SqliteStore (a mixin: the connection is SqliteStore's)."""

    _conn: sqlite3.Connection
    path: str

    def _runs(self, sql: str, params: Sequence[Any] = ()) -> list[Run]:
        return [_run_from_row(row) for row in self._conn.execute(sql, params)]

    @_guarded
    def running(self) -> list[Run]:
        """Runs whose status is `running`, oldest first."""
        # INDEXED BY: without ANALYZE statistics the planner would rather scan the table in id order
        # than sort the few rows the partial index yields.
        return self._runs(
            f"SELECT {_RUN_COLUMNS} FROM runs r INDEXED BY runs_running "
            "LEFT JOIN outputs o ON o.run_id = r.id WHERE r.status = 'running' ORDER BY r.id"
        )

    running_runs = running

    @_guarded
    def daemon(self) -> DaemonState | None:
        row = self._conn.execute(
            f"SELECT {', '.join(_DAEMON_FIELDS)} FROM daemon WHERE id = 1"
        ).fetchone()
        return None if row is None else DaemonState(*row)

    @_guarded
    def jobs(self) -> list[JobRow]:
        """The daemon's current jobs in jobs-file order."""
        return [
            JobRow(name, schedule, command, description, next_run, bool(enabled), line, *retry)
            for name, schedule, command, description, next_run, enabled, line, *retry in self._conn.execute(
                "SELECT name, schedule, command, description, next_run, enabled, line, "
                "retry_at, retry_attempt, retry_attempts FROM jobs ORDER BY position"
            )
        ]

    @_guarded
    def paused(self) -> dict[str, float]:
        """Paused jobs and since when."""
        return dict(self._conn.execute("SELECT job, since FROM paused ORDER BY job"))

    @_guarded
    def get_kv(self, key: str, default: str | None = None) -> str | None:
        row = self._conn.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return default if row is None else row[0]

    @_guarded
    def job_names(self) -> list[str]:
        """Names of the jobs that have runs, sorted."""
        return [
            row[0]
            for row in self._conn.execute(
                f"{_JOB_NAMES_CTE} SELECT job FROM names WHERE job IS NOT NULL"
            )
        ]

    @_guarded
    def last_runs(self, jobs: Sequence[str] | None = None) -> dict[str, Run]:
        """The latest run (highest id, finished or not) of every job that has runs (with
        `jobs`, of those)."""
        if jobs is not None:
            return {run.job: run for run in self._runs(
                f"SELECT {_RUN_COLUMNS} FROM json_each(?) j "
                "JOIN runs r ON r.id = (SELECT MAX(id) FROM runs WHERE job = j.value) "
                "LEFT JOIN outputs o ON o.run_id = r.id", (json.dumps(list(jobs)),))}
        sql = (
            f"{_JOB_NAMES_CTE} SELECT {_RUN_COLUMNS} FROM names "
            "JOIN runs r ON r.id = (SELECT MAX(id) FROM runs WHERE job = names.job) "
            "LEFT JOIN outputs o ON o.run_id = r.id "
            "WHERE names.job IS NOT NULL"
        )
        return {run.job: run for run in self._runs(sql)}

    @_guarded
    def runs(
        self,
        job: str,
        *,
        limit: int | None = 20,
        failed: bool = False,
        since: float | None = None,
        after_id: int | None = None,
        before_id: int | None = None,
    ) -> list[Run]:
        """A job's runs, newest first; with `after_id`, those after it, oldest first (--follow).

        `failed` keeps FAILED_STATUSES (failed, timeout, killed, lost, missed, error).
        `since` keeps runs that started (or, never started, were scheduled) at or after it.
        `limit=None` means no limit.
        """
        return self._select_runs(["job = ?"], [job], limit=limit, failed=failed, since=since,
                                 after_id=after_id, before_id=before_id)

    @_guarded
    def runs_of_all_jobs(
        self,
        *,
        limit: int | None = 20,
        failed: bool = False,
        since: float | None = None,
        after_id: int | None = None,
    ) -> list[Run]:
        """Runs of every job, newest first (oldest first with `after_id`); filters as `runs`."""
        return self._select_runs([], [], limit=limit, failed=failed, since=since, after_id=after_id)

    def _select_runs(self, where: list[str], params: list[Any], *, limit: int | None,
                     failed: bool, since: float | None, after_id: int | None = None,
                     before_id: int | None = None) -> list[Run]:
        run_range('?', where, params, since=since, after_id=after_id, before_id=before_id)
        order = "ASC" if after_id is not None else "DESC"
        n = -1 if limit is None else max(int(limit), 0)  # LIMIT -1: no limit
        if not failed:
            cond = f"WHERE {' AND '.join(where)}" if where else ""
            return self._runs(
                # Unqualified names are runs' own: outputs has no column called so.
                f"{_SELECT_RUNS} {cond} ORDER BY r.id {order} LIMIT ?",
                (*params, n),
            )
        # One index range per failed status, each cut to `limit`, merged: bounded work even
        # for a job with a million runs, where `status IN (...) ORDER BY id` would sort them all.
        # (Across jobs there is no (status, id) index: each arm walks ids newest first.)
        arms = []
        arm_params: list[Any] = []
        for status in FAILED_STATUSES:
            arms.append(
                f"SELECT id FROM (SELECT id FROM runs WHERE {' AND '.join([*where, 'status = ?'])} "
                f"ORDER BY id {order} LIMIT ?)"
            )
            arm_params += [*params, str(status), n]
        return self._runs(
            f"{_SELECT_RUNS} WHERE r.id IN ({' UNION ALL '.join(arms)}) "
            f"ORDER BY r.id {order} LIMIT ?",
            (*arm_params, n),
        )

    @_guarded
    def retried_ok(self, runs: Sequence[Run]) -> dict[int, int]:
        """For each of `runs` that did not succeed but a later attempt of the same fire did:
        run id -> the attempt that succeeded. E.g. attempt 1 failed, attempt 2 succeeded:
        {id of attempt 1: 2}."""
        ids = [run.id for run in runs if run.status is not RunStatus.SUCCESS]
        found: dict[int, int] = {}
        for start in range(0, len(ids), 500):  # under SQLite's limit on parameters
            chunk = ids[start:start + 500]
            rows = self._conn.execute(
                "SELECT r.id, MIN(s.attempt) FROM runs r JOIN runs s ON s.job = r.job "
                "AND s.scheduled_for = r.scheduled_for AND s.attempt > r.attempt "
                f"AND s.status = 'success' WHERE r.id IN ({_placeholders(len(chunk))}) GROUP BY r.id",
                chunk,
            ).fetchall()
            found.update({run_id: attempt for run_id, attempt in rows})
        return found

    @_guarded
    def run(self, run_id: int) -> Run | None:
        runs = self._runs(f"{_SELECT_RUNS} WHERE r.id = ?", (run_id,))
        return runs[0] if runs else None

    @_guarded
    def output(self, run_id: int) -> tuple[bytes, bool] | None:
        """A run's captured output and whether it was truncated; None if none was saved.

        Output removed by the size bound reads as (b"", False); `Run.output_pruned` says so.
        """
        row = self._conn.execute(
            "SELECT data, truncated FROM outputs WHERE run_id = ?", (run_id,)
        ).fetchone()
        return None if row is None else (bytes(row[0]), row[1] == 1)

    @_guarded
    def stats(self, job: str, n: int = 20) -> tuple[float | None, float | None]:
        """Success rate (0..1) of the job's last `n` invocations that ran or could not start
        (a retried run counts as its last attempt) and median duration (s) of its last `n` runs in RAN_STATUSES.

        (None, None) when there are none; e.g. 3 successes of 4 runs lasting 1, 2, 3, 10 s
        give (0.75, 2.5).
        """
        # Walk the job's runs newest first and stop at the n-th one that ran: ~n row reads.
        # (One index range per status, merged, reads up to 4n rows and was 10x slower on a
        # log of a million runs.) INDEXED BY keeps the planner from sorting all of a job's
        # rows out of the (job, status, id) index instead.
        # An `error` run (could not start) counts against the rate, as a failed one does, but
        # has no duration.
        counted = (*RAN_STATUSES, RunStatus.ERROR)
        rows = self._conn.execute(
            "SELECT status, finished_at - started_at, scheduled_for FROM runs INDEXED BY runs_job_id "
            f"WHERE job = ? AND status IN ({_placeholders(len(counted))}) "
            "ORDER BY id DESC LIMIT ?",
            (job, *map(str, counted), 3 * n),
        ).fetchall()
        return _rate_and_median(rows, n)

    @_guarded
    def last_scheduled(
        self, job: str, triggers: Sequence[str] = ("schedule", "catchup")
    ) -> float | None:
        """The latest scheduled_for among the job's runs with these triggers."""
        triggers = [str(t) for t in triggers]
        if not triggers:
            return None
        # Walk the unique index (job, scheduled_for, ...) backwards to the first match.
        row = self._conn.execute(
            f"SELECT scheduled_for FROM runs WHERE job = ? AND trigger IN "
            f"({_placeholders(len(triggers))}) ORDER BY scheduled_for DESC LIMIT 1",
            (job, *triggers),
        ).fetchone()
        return None if row is None else row[0]

    @_guarded
    def has_run(self, job: str, trigger: str, boot_id: str) -> bool:
        """Whether the job has a run with this trigger in this boot (for @reboot)."""
        return self._conn.execute(
            "SELECT 1 FROM runs WHERE job = ? AND trigger = ? AND boot_id = ? LIMIT 1",
            (job, str(trigger), boot_id),
        ).fetchone() is not None

    @_guarded
    def last_started(self, job: str) -> float | None:
        """When the job's latest-started run started.

        The newest run that started, by id: ids follow the order starts are recorded in, so
        this reads a few rows of the (job, id) index instead of every run of the job (an
        index on started_at would cost every burst of starts its upkeep).
        """
        row = self._conn.execute(
            "SELECT started_at FROM runs WHERE job = ? AND started_at IS NOT NULL "
            "ORDER BY id DESC LIMIT 1", (job,)
        ).fetchone()
        return row[0] if row else None

    @_guarded
    def last_success(self, job: str) -> float | None:
        """When the job's latest successful run finished (for @after after a restart)."""
        row = self._conn.execute(
            "SELECT finished_at FROM runs WHERE job = ? AND status = 'success' ORDER BY id DESC LIMIT 1",
            (job,),
        ).fetchone()
        return row[0] if row else None

    @_guarded
    def last_success_since(self, job: str, since: float) -> bool:
        """Whether the job has a successful run that finished at or after `since` (for @after)."""
        return self._conn.execute(
            "SELECT 1 FROM runs WHERE job = ? AND status = 'success' AND finished_at >= ? LIMIT 1",
            (job, since),
        ).fetchone() is not None

    # -- many jobs in one query (status and the daemon's start-up: constant queries) --------

    @_guarded
    def stats_many(self, jobs: Sequence[str], n: int = 20) -> dict[str, tuple[float | None, float | None]]:
        """`stats` of each of `jobs` in one query, two when some need more rows."""
        # `stats` reads up to 3n rows a job, for retries (several rows a fire) and errors (no
        # duration). A job whose newest n rows are n fires and no error has its answer in
        # those n: read n rows of every job, then the next 2n only of the jobs that need them
        # (a third of the rows read when retries and errors are rare).
        rows, oldest = self._stats_rows(dict.fromkeys(jobs, _NO_ID), n)
        more = {job: oldest[job] for job, found in rows.items() if len(found) == n and (
            len({r[2] for r in found}) < n or any(r[0] == "error" for r in found))}
        if more:
            for job, found in self._stats_rows(more, 2 * n)[0].items():
                rows[job] += found
        return {job: _rate_and_median(found, n) for job, found in rows.items()}

    def _stats_rows(self, before: dict[str, int], limit: int) -> tuple[dict[str, list[tuple]], dict[str, int]]:
        """Per job, its newest `limit` (status, duration, scheduled_for) rows in the statuses
        `stats` counts, of ids below before[job] (one index walk per job); and the oldest id
        of those rows per job."""
        counted = (*RAN_STATUSES, RunStatus.ERROR)
        rows: dict[str, list[tuple]] = {job: [] for job in before}
        oldest: dict[str, int] = {}
        for job, run_id, status, duration, scheduled_for in self._conn.execute(
            "SELECT j.key, r.id, r.status, r.finished_at - r.started_at, r.scheduled_for "
            "FROM json_each(?) j JOIN runs r ON r.id IN (SELECT id FROM runs INDEXED BY runs_job_id "
            f"WHERE job = j.key AND id < j.value AND status IN ({_placeholders(len(counted))}) "
            "ORDER BY id DESC LIMIT ?) ORDER BY j.key, r.id DESC",
            (json.dumps(before), *map(str, counted), limit),
        ):
            rows[job].append((status, duration, scheduled_for))
            oldest[job] = run_id
        return rows, oldest

    @_guarded
    def last_finished(self, jobs: Sequence[str], skip: Sequence[RunStatus], *,
                      within: int = 50) -> dict[str, Run]:
        """Per job, the newest of its last `within` runs whose status is not in `skip`."""
        skip = [str(RunStatus(status)) for status in skip]
        sql = (
            f"SELECT {_RUN_COLUMNS} FROM json_each(?) j JOIN runs r ON r.id = (SELECT id FROM "
            "(SELECT id, status FROM runs WHERE job = j.value ORDER BY id DESC LIMIT ?) "
            f"WHERE status NOT IN ({_placeholders(len(skip))}) ORDER BY id DESC LIMIT 1) "
            "LEFT JOIN outputs o ON o.run_id = r.id"
        )
        return {run.job: run for run in self._runs(sql, (json.dumps(list(jobs)), within, *skip))}

    @_guarded
    def history(self, jobs: Sequence[str], boot_id: str) -> StoredHistory:
        """For each of `jobs`: last_scheduled, last_started, last_success and whether it ran
        @reboot in this boot, as the single-job methods below say, in one query."""
        h = StoredHistory()
        for job, scheduled, started, success, rebooted in self._conn.execute(
            "SELECT j.value, "
            "(SELECT scheduled_for FROM runs WHERE job = j.value AND trigger IN ('schedule', 'catchup') "
            " ORDER BY scheduled_for DESC LIMIT 1), "
            "(SELECT started_at FROM runs WHERE job = j.value AND started_at IS NOT NULL "
            " ORDER BY id DESC LIMIT 1), "
            "(SELECT finished_at FROM runs WHERE job = j.value AND status = 'success' "
            " ORDER BY id DESC LIMIT 1), "
            "EXISTS (SELECT 1 FROM runs WHERE job = j.value AND trigger = 'reboot' AND boot_id = ?) "
            "FROM json_each(?) j",
            (boot_id, json.dumps(list(jobs))),
        ):
            if scheduled is not None:
                h.last_scheduled[job] = scheduled
            if started is not None:
                h.last_started[job] = started
            if success is not None:
                h.last_success[job] = success
            if rebooted:
                h.reboot_done.add(job)
        return h

    # -- metrics (a scrape: a constant number of queries) ------------------------------------

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Reads inside see one committed state (a read transaction; WAL never blocks the
        writer for it). Nested, or inside a write, it adds nothing."""
        if self._conn.in_transaction:
            yield
            return
        self._guarded_execute("BEGIN")
        try:
            yield
        finally:
            if self._conn.in_transaction:
                self._guarded_execute("COMMIT")

    @_guarded
    def _guarded_execute(self, sql: str) -> None:
        self._conn.execute(sql)

    @_guarded
    def counters(self) -> list[StoredCounter]:
        """Every stored counter, by name then labels."""
        # Label texts are parsed once per connection: the same ones come back every scrape.
        # They are json_object() of sorted keys, however written, so one text per label set.
        parsed: dict[str, tuple[tuple[str, str], ...] | None] = self.__dict__.setdefault("_labels_seen", {})
        found = []
        for name, labels, value in self._conn.execute(
                "SELECT name, labels, value FROM counters ORDER BY name, labels"):
            try:
                pairs = parsed[labels]
            except KeyError:
                pairs = parsed[labels] = _label_pairs(labels)
            if pairs is not None:
                found.append(StoredCounter(name, pairs, value))
        return found

    @_guarded
    def job_summaries(self, jobs: Sequence[str]) -> dict[str, JobSummary]:
        """Each job's latest start, latest success, latest run that ran and running count,
        in one query (index seeks per job, whatever the history)."""
        ran = _placeholders(len(RAN_STATUSES))
        found: dict[str, JobSummary] = {}
        for job, started, success, running, status, exit_code, sig, duration in self._conn.execute(
            "SELECT j.value, "
            "(SELECT started_at FROM runs WHERE job = j.value AND started_at IS NOT NULL "
            " ORDER BY id DESC LIMIT 1), "
            "(SELECT finished_at FROM runs WHERE job = j.value AND status = 'success' "
            " ORDER BY id DESC LIMIT 1), "
            "(SELECT COUNT(*) FROM runs WHERE job = j.value AND status = 'running'), "
            "r.status, r.exit_code, r.signal, r.finished_at - r.started_at "
            "FROM json_each(?) j LEFT JOIN runs r ON r.id = (SELECT id FROM runs INDEXED BY runs_job_id "
            f" WHERE job = j.value AND status IN ({ran}) ORDER BY id DESC LIMIT 1)",
            (json.dumps(list(jobs)), *map(str, RAN_STATUSES)),
        ):
            found[job] = JobSummary(
                last_started=started, last_success=success,
                last_status=None if status is None else RunStatus(status),
                last_exit_code=exit_code, last_signal=sig, last_duration=duration,
                running=running)
        return found

    def follow(self, job: str | None, after_id: int, *, limit: int = 1000) -> list[Run]:
        """Runs recorded after `after_id` (of `job`, or of all jobs), oldest first.

        Ids are given in commit order (one writer, and a job's newest run is never pruned,
        so the highest id is never reused): asking again after the last id returned sees
        every run exactly once.
        """
        if job is None:
            return self.runs_of_all_jobs(after_id=after_id, limit=limit)
        return self.runs(job, after_id=after_id, limit=limit)

    # -- backfills ----------------------------------------------------------------------------

    _BACKFILL_COLUMNS = (
        "b.id, b.job, b.range_from, b.range_to, b.reprocess, b.max_parallel, b.created_at, "
        "b.state, b.ended_at, (SELECT COUNT(*) FROM backfill_slots s WHERE s.backfill_id = b.id), "
        "b.skipped"
    )

    @_guarded
    def backfills(self, job: str | None = None, *, active: bool = False) -> list[Backfill]:
        """Backfills newest first: of one job or all, only active ones with `active`."""
        where, params = [], []
        if job is not None:
            where.append("b.job = ?")
            params.append(job)
        if active:
            where.append("b.state = 'active'")
        cond = f"WHERE {' AND '.join(where)}" if where else ""
        return [Backfill(*row) for row in self._conn.execute(
            f"SELECT {self._BACKFILL_COLUMNS} FROM backfills b {cond} ORDER BY b.id DESC", params)]

    @_guarded
    def backfill(self, backfill_id: int) -> Backfill | None:
        row = self._conn.execute(
            f"SELECT {self._BACKFILL_COLUMNS} FROM backfills b WHERE b.id = ?", (backfill_id,)).fetchone()
        return None if row is None else Backfill(*row)

    @_guarded
    def backfill_slots(self, backfill_id: int) -> list[BackfillSlot]:
        """A backfill's slots oldest first, each with the status of its latest attempt."""
        rows = self._conn.execute(
            "SELECT s.scheduled_for, s.attempt, s.run_id, "
            "(SELECT r.status FROM runs r WHERE r.job = b.job AND r.scheduled_for = s.scheduled_for "
            " AND r.attempt >= s.attempt ORDER BY r.attempt DESC LIMIT 1) "
            "FROM backfill_slots s JOIN backfills b ON b.id = s.backfill_id "
            "WHERE s.backfill_id = ? ORDER BY s.scheduled_for", (backfill_id,)).fetchall()
        return [BackfillSlot(t, attempt, run_id, None if status is None or run_id is None
                             else RunStatus(status)) for t, attempt, run_id, status in rows]

    @_guarded
    def runs_scheduled_between(self, job: str, start: float, end: float) -> list[Run]:
        """The job's runs whose scheduled time is in [start, end), by scheduled time and
        attempt (the unique index's order): what a backfill of that range finds."""
        return self._runs(
            f"{_SELECT_RUNS} WHERE r.job = ? AND r.scheduled_for >= ? AND r.scheduled_for < ? "
            "ORDER BY r.scheduled_for, r.attempt", (job, start, end))
