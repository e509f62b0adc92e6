"""The SQLite run log's queries for the web view: strips of recent runs, filtered pages, output in parts."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from cronsup.model import RunStatus
from cronsup.store.records import Run, RunMark
from cronsup.store.rows import run_range
from cronsup.store.sqlite.reads import _SELECT_RUNS, _run_from_row
from cronsup.store.sqlite.schema import _guarded, _placeholders


class WebReads:
    """More of SqliteStore's read side (a mixin: the connection is SqliteStore's)."""

    _conn: sqlite3.Connection

    def _runs(self, sql: str, params: Sequence[Any] = ()) -> list[Run]:
        return [_run_from_row(row) for row in self._conn.execute(sql, params)]

    @_guarded
    def recent_marks_many(self, jobs: Sequence[str], n: int = 30,
                          after: dict[str, int] | None = None) -> dict[str, list[RunMark]]:
        """Each job's last `n` runs, newest first, as light RunMarks, in one query (one index
        walk per job): the overview's strips of 1,000 jobs need no full Run records. With
        `after` (job -> run id), only the runs above that id: what came since a look."""
        found: dict[str, list[RunMark]] = {job: [] for job in jobs}
        after = after or {}
        make = tuple.__new__  # RunMark(*row) costs a Python call per row; 30,000 rows here
        for row in self._conn.execute(
            "SELECT j.key, r.id, r.status, r.started_at, r.finished_at, r.scheduled_for FROM json_each(?) j "
            "JOIN runs r ON r.id IN (SELECT id FROM runs INDEXED BY runs_job_id WHERE job = j.key "
            "AND id > j.value ORDER BY id DESC LIMIT ?) ORDER BY j.key, r.id DESC",
            (json.dumps({job: int(after.get(job, 0)) for job in found}), max(int(n), 0)),
        ):
            found[row[0]].append(make(RunMark, row[1:]))
        return found

    @_guarded
    def runs_by_id(self, run_ids: Sequence[int]) -> dict[int, Run]:
        """The runs of these ids, by primary key (ids of no run left out)."""
        return {run.id: run for run in self._runs(
            f"{_SELECT_RUNS} WHERE r.id IN (SELECT value FROM json_each(?))",
            (json.dumps([int(i) for i in run_ids]),))}

    @_guarded
    def newest_ids(self, jobs: Sequence[str]) -> dict[str, int]:
        """Each job's highest run id (jobs without runs left out), one index seek per job."""
        return {job: run_id for job, run_id in self._conn.execute(
            "SELECT j.value, (SELECT MAX(id) FROM runs WHERE job = j.value) FROM json_each(?) j",
            (json.dumps(list(jobs)),)) if run_id is not None}

    @_guarded
    def runs_filtered(self, job: str | None, *, statuses: Sequence[RunStatus] | None = None,
                      since: float | None = None, until: float | None = None,
                      before_id: int | None = None, limit: int = 50) -> list[Run]:
        """Runs of `job` (None: of every job) newest first, whose status is one of `statuses`
        (None: any) and which started (or, never started, were due) in [since, until)."""
        where, params = [], []
        if job is not None:
            where.append("job = ?")
            params.append(job)
        run_range('?', where, params, since=since, until=until, before_id=before_id)
        n = max(int(limit), 0)
        if not statuses:
            cond = f"WHERE {' AND '.join(where)}" if where else ""
            return self._runs(f"{_SELECT_RUNS} {cond} ORDER BY r.id DESC LIMIT ?", (*params, n))
        if job is None:
            where.append(f"status IN ({_placeholders(len(statuses))})")
            return self._runs(f"{_SELECT_RUNS} WHERE {' AND '.join(where)} ORDER BY r.id DESC LIMIT ?",
                              (*params, *map(str, statuses), n))
        # One (job, status, id) index range per status, each cut to `limit`, merged: bounded
        # work on a job with a million runs.
        arms, arm_params = [], []
        for status in statuses:
            arms.append(f"SELECT id FROM (SELECT id FROM runs WHERE {' AND '.join([*where, 'status = ?'])} "
                        "ORDER BY id DESC LIMIT ?)")
            arm_params += [*params, str(RunStatus(status)), n]
        return self._runs(f"{_SELECT_RUNS} WHERE r.id IN ({' UNION ALL '.join(arms)}) "
                          "ORDER BY r.id DESC LIMIT ?", (*arm_params, n))

    @_guarded
    def output_part(self, run_id: int, offset: int, size: int) -> tuple[bytes, int, bool] | None:
        """`size` bytes of a run's output from `offset`, its whole length and whether it was
        truncated; None if no output was saved."""
        row = self._conn.execute(
            "SELECT substr(data, ?, ?), length(data), truncated FROM outputs WHERE run_id = ?",
            (max(int(offset), 0) + 1, max(int(size), 0), run_id),
        ).fetchone()
        return None if row is None else (bytes(row[0] or b""), row[1] or 0, row[2] == 1)

    @_guarded
    def superseded(self, runs: Sequence[Run]) -> set[int]:
        """Ids of those of `runs` that a later attempt of the same fire followed (not final)."""
        ids = [run.id for run in runs]
        found: set[int] = set()
        for start in range(0, len(ids), 500):  # under SQLite's limit on parameters
            chunk = ids[start:start + 500]
            found.update(row[0] for row in self._conn.execute(
                "SELECT r.id FROM runs r WHERE r.id IN "
                f"({_placeholders(len(chunk))}) AND EXISTS (SELECT 1 FROM runs s WHERE s.job = r.job "
                "AND s.scheduled_for = r.scheduled_for AND s.attempt > r.attempt)", chunk))
        return found
