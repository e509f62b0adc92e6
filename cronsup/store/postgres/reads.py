"""The PostgreSQL run store's queries: what status, logs, nodes and the daemon's start-up read."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cronsup.model import RunStatus
from cronsup.store.postgres.schema import (
    _DAEMON_FIELDS,
    DB_NOW,
    guarded,
)
from cronsup.store.rows import run_from_row as _run_from_row, run_range
from cronsup.store.records import (
    FAILED_STATUSES,
    RAN_STATUSES,
    DaemonState,
    JobRow,
    Run,
    StoredHistory,
)

_RUN_COLUMNS = (
    "r.id, r.job, r.trigger, r.attempt, r.scheduled_for, r.started_at, r.finished_at, "
    "r.status, r.exit_code, r.signal, r.pid, r.pid_start, r.host, r.boot_id, r.reason, "
    "r.cpu_s, r.max_rss, o.truncated, r.params"
)
_RUN_FROM = "runs r LEFT JOIN outputs o ON o.run_id = r.id"
_SELECT_RUNS = f"SELECT {_RUN_COLUMNS} FROM {_RUN_FROM}"

# The distinct job names of `runs` by hopping through the (job, id) index, one seek a job.
_JOB_NAMES_CTE = """
WITH RECURSIVE names(job) AS (
    SELECT (SELECT min(job) FROM runs)
    UNION ALL
    SELECT (SELECT min(r.job) FROM runs r WHERE r.job > names.job)
    FROM names WHERE names.job IS NOT NULL
)
"""




class Reads:
    """The readers' side of PostgresStore (a mixin)."""

    node: str

    def _runs(self, sql: str, params: Sequence[Any] = ()) -> list[Run]:
        return [_run_from_row(row) for row in self._conn.execute(sql, params)]

    @guarded
    def running(self) -> list[Run]:
        """Running runs of every node, oldest first."""
        return self._runs(f"{_SELECT_RUNS} WHERE r.status = 'running' ORDER BY r.id")

    @guarded
    def running_runs(self) -> list[Run]:
        """This node's running runs (what its start-up recovers), oldest first."""
        return self._runs(f"{_SELECT_RUNS} WHERE r.status = 'running' AND r.host = %s ORDER BY r.id",
                          (self.node,))

    @guarded
    def daemon(self) -> DaemonState | None:
        row = self._conn.execute(f"SELECT {', '.join(_DAEMON_FIELDS)} FROM nodes WHERE node = %s",
                                 (self.node,)).fetchone()
        return None if row is None else DaemonState(*row)

    @guarded
    def nodes(self) -> list[dict[str, Any]]:
        """Every node of the cluster, with its heartbeat's age by the database's clock and
        its running runs."""
        cur = self._conn.execute(
            f"SELECT n.*, {DB_NOW} - n.db_seen AS age, (SELECT count(*) FROM runs r "
            "WHERE r.status = 'running' AND r.host = n.node) AS running FROM nodes n ORDER BY n.node")
        names = [d.name for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]

    @guarded
    def job_digests(self) -> dict[str, dict[str, str | None]]:
        """job -> {node: digest of its definition there}, over the nodes' current jobs."""
        found: dict[str, dict[str, str | None]] = {}
        for node, name, digest in self._conn.execute("SELECT node, name, digest FROM jobs ORDER BY node"):
            found.setdefault(name, {})[node] = digest
        return found

    @guarded
    def jobs(self) -> list[JobRow]:
        return [
            JobRow(name, schedule, command, description, next_run, bool(enabled), line, *retry)
            for name, schedule, command, description, next_run, enabled, line, *retry in self._conn.execute(
                "SELECT name, schedule, command, description, next_run, enabled, line, "
                "retry_at, retry_attempt, retry_attempts FROM jobs WHERE node = %s ORDER BY position",
                (self.node,))
        ]

    @guarded
    def paused(self) -> dict[str, float]:
        return dict(self._conn.execute("SELECT job, since FROM paused ORDER BY job").fetchall())

    @guarded
    def get_kv(self, key: str, default: str | None = None) -> str | None:
        row = self._conn.execute("SELECT value FROM kv WHERE node = %s AND key = %s",
                                 (self.node, key)).fetchone()
        return default if row is None else row[0]

    @guarded
    def job_names(self) -> list[str]:
        return [row[0] for row in self._conn.execute(
            f"{_JOB_NAMES_CTE} SELECT job FROM names WHERE job IS NOT NULL ORDER BY job")]

    @guarded
    def last_runs(self, jobs: Sequence[str] | None = None) -> dict[str, Run]:
        if jobs is not None:
            return {run.job: run for run in self._runs(
                f"SELECT {_RUN_COLUMNS} FROM unnest(%s::text[]) j(value) JOIN LATERAL "
                "(SELECT * FROM runs WHERE job = j.value ORDER BY id DESC LIMIT 1) r ON true "
                "LEFT JOIN outputs o ON o.run_id = r.id", (list(jobs),))}
        sql = (f"{_JOB_NAMES_CTE} SELECT {_RUN_COLUMNS} FROM names JOIN LATERAL "
               "(SELECT * FROM runs WHERE job = names.job ORDER BY id DESC LIMIT 1) r ON true "
               "LEFT JOIN outputs o ON o.run_id = r.id WHERE names.job IS NOT NULL")
        return {run.job: run for run in self._runs(sql)}

    @guarded
    def runs(self, job: str, *, limit: int | None = 20, failed: bool = False,
             since: float | None = None, after_id: int | None = None,
             before_id: int | None = None) -> list[Run]:
        return self._select_runs(["job = %s"], [job], limit=limit, failed=failed, since=since,
                                 after_id=after_id, before_id=before_id)

    @guarded
    def runs_of_all_jobs(self, *, limit: int | None = 20, failed: bool = False,
                         since: float | None = None, after_id: int | None = None) -> list[Run]:
        return self._select_runs([], [], limit=limit, failed=failed, since=since, after_id=after_id)

    def _select_runs(self, where: list[str], params: list[Any], *, limit: int | None,
                     failed: bool, since: float | None, after_id: int | None = None,
                     before_id: int | None = None) -> list[Run]:
        run_range('%s', where, params, since=since, after_id=after_id, before_id=before_id)
        order = "ASC" if after_id is not None else "DESC"
        n = None if limit is None else max(int(limit), 0)  # LIMIT NULL: no limit
        if not failed:
            cond = f"WHERE {' AND '.join(where)}" if where else ""
            return self._runs(f"{_SELECT_RUNS} {cond} ORDER BY r.id {order} LIMIT %s", (*params, n))
        # One index range per failed status, each cut to `limit`, merged.
        arms, arm_params = [], []
        for status in FAILED_STATUSES:
            arms.append(f"(SELECT id FROM runs WHERE {' AND '.join([*where, 'status = %s'])} "
                        f"ORDER BY id {order} LIMIT %s)")
            arm_params += [*params, str(status), n]
        return self._runs(f"{_SELECT_RUNS} WHERE r.id IN ({' UNION ALL '.join(arms)}) "
                          f"ORDER BY r.id {order} LIMIT %s", (*arm_params, n))

    @guarded
    def retried_ok(self, runs: Sequence[Run]) -> dict[int, int]:
        ids = [run.id for run in runs if run.status is not RunStatus.SUCCESS]
        if not ids:
            return {}
        return dict(self._conn.execute(
            "SELECT r.id, MIN(s.attempt) FROM runs r JOIN runs s ON s.job = r.job "
            "AND s.scheduled_for = r.scheduled_for AND s.attempt > r.attempt "
            "AND s.status = 'success' WHERE r.id = ANY(%s) GROUP BY r.id", (ids,)).fetchall())

    @guarded
    def run(self, run_id: int) -> Run | None:
        runs = self._runs(f"{_SELECT_RUNS} WHERE r.id = %s", (run_id,))
        return runs[0] if runs else None

    @guarded
    def output(self, run_id: int) -> tuple[bytes, bool] | None:
        row = self._conn.execute("SELECT data, truncated FROM outputs WHERE run_id = %s",
                                 (run_id,)).fetchone()
        return None if row is None else (bytes(row[0]), row[1] == 1)

    @guarded
    def stats(self, job: str, n: int = 20) -> tuple[float | None, float | None]:
        return self.stats_many([job], n)[job]

    @guarded
    def stats_many(self, jobs: Sequence[str], n: int = 20) -> dict[str, tuple[float | None, float | None]]:
        """As SqliteStore.stats_many (the same rules as _rate_and_median), computed in the
        database: one row a job comes back, not 3n."""
        counted = [str(s) for s in (*RAN_STATUSES, RunStatus.ERROR)]
        # A job whose newest n runs are n fires and no error (the common case) has its
        # answer in those n, a plain aggregate; the others (retries, errors) take the
        # query over 3n runs below.
        found, more = {}, []
        for job, count, fires, errors, rate, median in self._conn.execute(
            "SELECT j.value, s.* FROM unnest(%s::text[]) j(value) JOIN LATERAL ("
            " SELECT count(*), count(DISTINCT x.scheduled_for), bool_or(x.status = 'error'),"
            "  avg((x.status = 'success')::int)::float8,"
            "  percentile_cont(0.5) WITHIN GROUP (ORDER BY x.finished_at - x.started_at)"
            " FROM (SELECT status, scheduled_for, started_at, finished_at FROM runs"
            "  WHERE job = j.value AND status = ANY(%s) ORDER BY id DESC LIMIT %s) x) s ON true",
                (list(jobs), counted, n)):
            if count and (fires < count or errors):
                more.append(job)
            elif count:
                found[job] = (rate, median)
        if more:
            found.update(self._stats_of_retried(more, counted, n))
        return {job: found.get(job, (None, None)) for job in jobs}

    def _stats_of_retried(self, jobs: list[str], counted: list[str],
                          n: int) -> dict[str, tuple[float | None, float | None]]:
        return {job: (rate, median) for job, rate, median in self._conn.execute(
            "SELECT j.value, s.rate, s.median FROM unnest(%s::text[]) j(value) JOIN LATERAL ("
            " WITH x AS (SELECT id, status, finished_at - started_at AS d, scheduled_for FROM runs"
            "   WHERE job = j.value AND status = ANY(%s) ORDER BY id DESC LIMIT %s)"
            " SELECT (SELECT avg((o.status = 'success')::int)::float8 FROM (SELECT * FROM"
            "   (SELECT DISTINCT ON (scheduled_for) id, status FROM x ORDER BY scheduled_for, id DESC) f"
            "   ORDER BY id DESC LIMIT %s) o) AS rate,"
            "  (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY r.d) FROM (SELECT d FROM x"
            "   WHERE status != 'error' ORDER BY id DESC LIMIT %s) r WHERE r.d IS NOT NULL) AS median"
            ") s ON true",
            (jobs, counted, 3 * n, n, n))}

    @guarded
    def last_finished(self, jobs: Sequence[str], skip: Sequence[RunStatus], *,
                      within: int = 50) -> dict[str, Run]:
        skip = [str(RunStatus(status)) for status in skip]
        sql = (
            f"SELECT {_RUN_COLUMNS} FROM unnest(%s::text[]) j(value) JOIN LATERAL "
            "(SELECT * FROM (SELECT * FROM runs WHERE job = j.value ORDER BY id DESC LIMIT %s) w "
            "WHERE NOT (status = ANY(%s)) ORDER BY id DESC LIMIT 1) r ON true "
            "LEFT JOIN outputs o ON o.run_id = r.id"
        )
        return {run.job: run for run in self._runs(sql, (list(jobs), within, skip))}

    @guarded
    def runs_scheduled_between(self, job: str, start: float, end: float) -> list[Run]:
        """The job's runs whose scheduled time is in [start, end), by scheduled time and
        attempt: what a backfill of that range finds."""
        return self._runs(
            f"{_SELECT_RUNS} WHERE r.job = %s AND r.scheduled_for >= %s AND r.scheduled_for < %s "
            "ORDER BY r.scheduled_for, r.attempt, r.id", (job, start, end))

    @guarded
    def history(self, jobs: Sequence[str], boot_id: str) -> StoredHistory:
        h = StoredHistory()
        for job, scheduled, started, success, rebooted in self._conn.execute(
            "SELECT j.value, "
            "(SELECT scheduled_for FROM runs WHERE job = j.value AND trigger IN ('schedule', 'catchup') "
            " ORDER BY scheduled_for DESC LIMIT 1), "
            "(SELECT started_at FROM runs WHERE job = j.value AND started_at IS NOT NULL "
            " ORDER BY id DESC LIMIT 1), "
            "(SELECT finished_at FROM runs WHERE job = j.value AND status = 'success' "
            " ORDER BY id DESC LIMIT 1), "
            "EXISTS (SELECT 1 FROM runs WHERE job = j.value AND trigger = 'reboot' AND boot_id = %s) "
            "FROM unnest(%s::text[]) j(value)",
            (boot_id, list(jobs)),
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

    def follow(self, job: str | None, after_id: int, *, limit: int = 1000) -> list[Run]:
        """Runs recorded after `after_id`, oldest first. Inserts take one advisory lock, so
        ids are committed in order whatever the number of nodes."""
        if job is None:
            return self.runs_of_all_jobs(after_id=after_id, limit=limit)
        return self.runs(job, after_id=after_id, limit=limit)
