"""The PostgreSQL run log's queries for the web view: strips of recent runs, filtered pages, output in parts."""

from __future__ import annotations

from collections.abc import Sequence

from cronsup.model import RunStatus
from cronsup.store.postgres.reads import _RUN_COLUMNS, _SELECT_RUNS
from cronsup.store.postgres.schema import guarded
from cronsup.store.records import Run, RunMark
from cronsup.store.rows import run_range


class WebReads:
    """More of PostgresStore's read side (a mixin: the connection and _runs are Reads')."""

    @guarded
    def recent_marks_many(self, jobs: Sequence[str], n: int = 30,
                          after: dict[str, int] | None = None) -> dict[str, list[RunMark]]:
        """Each job's last `n` runs, newest first, as light RunMarks, in one query (one
        (job, id) index walk per job through a LATERAL join); with `after` (job -> run id),
        only the runs above that id."""
        found: dict[str, list[RunMark]] = {job: [] for job in jobs}
        after = after or {}
        make = tuple.__new__  # RunMark(*row) costs a Python call per row
        for row in self._conn.execute(
            "SELECT j.value, r.id, r.status, r.started_at, r.finished_at, r.scheduled_for "
            "FROM unnest(%s::text[], %s::bigint[]) WITH ORDINALITY j(value, after_id, pos) JOIN LATERAL "
            "(SELECT id, status, started_at, finished_at, scheduled_for FROM runs "
            " WHERE job = j.value AND id > j.after_id ORDER BY id DESC LIMIT %s) r ON true "
            "ORDER BY j.pos, r.id DESC",
            (list(found), [int(after.get(job, 0)) for job in found], max(int(n), 0)),
        ):
            found[row[0]].append(make(RunMark, row[1:]))
        return found

    @guarded
    def runs_by_id(self, run_ids: Sequence[int]) -> dict[int, Run]:
        """The runs of these ids, by primary key (ids of no run left out)."""
        return {run.id: run for run in self._runs(f"{_SELECT_RUNS} WHERE r.id = ANY(%s)",
                                                  ([int(i) for i in run_ids],))}

    @guarded
    def newest_ids(self, jobs: Sequence[str]) -> dict[str, int]:
        """Each job's highest run id (jobs without runs left out), one index seek per job."""
        return {job: run_id for job, run_id in self._conn.execute(
            "SELECT j.value, (SELECT max(id) FROM runs WHERE job = j.value) "
            "FROM unnest(%s::text[]) j(value)", (list(jobs),)) if run_id is not None}

    @guarded
    def runs_filtered(self, job: str | None, *, statuses: Sequence[RunStatus] | None = None,
                      since: float | None = None, until: float | None = None,
                      before_id: int | None = None, limit: int = 50) -> list[Run]:
        """Runs of `job` (None: of every job) newest first, whose status is one of `statuses`
        (None: any) and which started (or, never started, were due) in [since, until)."""
        where, params = [], []
        if job is not None:
            where.append("job = %s")
            params.append(job)
        run_range('%s', where, params, since=since, until=until, before_id=before_id)
        n = max(int(limit), 0)
        if not statuses:
            cond = f"WHERE {' AND '.join(where)}" if where else ""
            return self._runs(f"{_SELECT_RUNS} {cond} ORDER BY r.id DESC LIMIT %s", (*params, n))
        wanted = [str(RunStatus(status)) for status in statuses]
        if job is None:
            where.append("status = ANY(%s)")
            return self._runs(
                f"SELECT {_RUN_COLUMNS} FROM (SELECT * FROM runs WHERE {' AND '.join(where)} "
                "ORDER BY id DESC LIMIT %s) r LEFT JOIN outputs o ON o.run_id = r.id ORDER BY r.id DESC",
                (*params, wanted, n))
        # One (job, status, id) index range per status, each cut to `limit`, merged: bounded
        # work on a job with a million runs.
        cond = " AND ".join([*where, "status = s.value"])
        return self._runs(
            f"SELECT {_RUN_COLUMNS} FROM (SELECT x.* FROM unnest(%s::text[]) s(value) JOIN LATERAL "
            f"(SELECT * FROM runs WHERE {cond} ORDER BY id DESC LIMIT %s) x ON true "
            "ORDER BY x.id DESC LIMIT %s) r LEFT JOIN outputs o ON o.run_id = r.id ORDER BY r.id DESC",
            (wanted, *params, n, n))

    @guarded
    def output_part(self, run_id: int, offset: int, size: int) -> tuple[bytes, int, bool] | None:
        """`size` bytes of a run's output from `offset`, its whole length and whether it was
        truncated; None if no output was saved."""
        row = self._conn.execute(
            "SELECT substring(data FROM %s FOR %s), octet_length(data), truncated "
            "FROM outputs WHERE run_id = %s",
            (max(int(offset), 0) + 1, max(int(size), 0), run_id),
        ).fetchone()
        return None if row is None else (bytes(row[0] or b""), row[1] or 0, row[2] == 1)

    @guarded
    def superseded(self, runs: Sequence[Run]) -> set[int]:
        """Ids of those of `runs` that a later attempt of the same fire followed (not final)."""
        ids = [run.id for run in runs]
        if not ids:
            return set()
        return {row[0] for row in self._conn.execute(
            "SELECT r.id FROM runs r WHERE r.id = ANY(%s) AND EXISTS (SELECT 1 FROM runs s "
            "WHERE s.job = r.job AND s.scheduled_for = r.scheduled_for AND s.attempt > r.attempt)",
            (ids,))}
