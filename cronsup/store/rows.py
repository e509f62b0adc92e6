"""Rows of the runs table as records: the same columns in every store (their SQL stays theirs)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from cronsup.model import RunStatus, Trigger
from cronsup.store.records import Run

# outputs.truncated: 0 whole, 1 cut to its first and last halves by output_limit, 2 removed
# (data empty) to keep the run log's output under the daemon's --keep-size.
OUTPUT_PRUNED = 2


def outputs_to_empty(mark: str) -> str:
    """The query of the next outputs --keep-size may empty: finished runs' non-empty ones
    after a run id, oldest first, 500 at most (`mark`: the store's placeholder)."""
    return ("SELECT o.run_id, length(o.data) FROM outputs o JOIN runs r ON r.id = o.run_id "
            f"WHERE o.run_id > {mark} AND o.truncated != {mark} AND length(o.data) > 0 "
            "AND r.status != 'running' ORDER BY o.run_id LIMIT 500")


def empty_outputs(excess: int, batch: Callable[[int, int], tuple[int, list[int], int]],
                  empty: Callable[[list[int]], None]) -> int:
    """Empty the oldest outputs until `excess` bytes are freed (prune_output of every store):
    `batch(after, excess)` picks the next ones (the last id looked at, their run ids, their
    bytes), `empty(run_ids)` empties them. Returns how many were emptied."""
    removed = after = 0
    while excess > 0:
        after, run_ids, size = batch(after, excess)
        if not run_ids:
            break  # the rest is running runs' output
        empty(run_ids)
        removed += len(run_ids)
        excess -= size
    return removed


def pick_outputs(rows: Iterable[tuple[int, int]], after: int, excess: int) -> tuple[int, list[int], int]:
    """From outputs_to_empty's rows: the run ids to empty until `excess` bytes are freed, the
    last id looked at, and their bytes."""
    run_ids, size = [], 0
    for run_id, n in rows:
        after = run_id
        run_ids.append(run_id)
        size += n
        if size >= excess:
            break
    return after, run_ids, size


def run_from_row(row: Sequence[Any]) -> Run:
    """A Run from the columns every store's run query selects, in this order."""
    (id_, job, trigger, attempt, scheduled_for, started_at, finished_at, status, exit_code,
     signal, pid, pid_start, host, boot_id, reason, cpu_s, max_rss, truncated, params) = row
    return Run(
        id=id_, job=job, trigger=Trigger(trigger), attempt=attempt,
        scheduled_for=scheduled_for, started_at=started_at, finished_at=finished_at,
        status=RunStatus(status), exit_code=exit_code, signal=signal, pid=pid,
        pid_start=pid_start, host=host, boot_id=boot_id, reason=reason, cpu_s=cpu_s,
        max_rss=max_rss,
        output_truncated=None if truncated is None else truncated == 1,
        output_pruned=truncated == OUTPUT_PRUNED,
        params=params_from_json(params),
    )


def params_from_json(text: str | None) -> tuple[tuple[str, str], ...]:
    """runs.params (a JSON object) as (key, value) pairs; anything else reads as none."""
    try:
        found = json.loads(text) if text is not None else None
    except ValueError:
        return ()
    if not isinstance(found, dict):
        return ()
    return tuple((str(k), str(v)) for k, v in found.items())


def run_range(mark: str, where: list[str], params: list, *, since: float | None = None,
              until: float | None = None, after_id: int | None = None,
              before_id: int | None = None) -> None:
    """Add the range conditions every runs query shares to `where`/`params`, with the
    store's placeholder `mark` ("?" or "%s"). A run counts at its start, or its due time
    when it never started."""
    for cond, value in (("COALESCE(started_at, scheduled_for) >=", since),
                        ("COALESCE(started_at, scheduled_for) <", until),
                        ("id >", after_id), ("id <", before_id)):
        if value is not None:
            where.append(f"{cond} {mark}")
            params.append(value)


def outcomes(rows: Sequence[tuple[str, float | None, float]], n: int) -> tuple[dict[float, str], list[float | None]]:
    """A job's last `n` invocations' results (scheduled time -> status) and the durations of
    its last `n` runs that ran, from (status, duration, scheduled_for) rows newest first.

    The rate counts invocations: a fire whose retry succeeded counts as the success it
    became (newest first, a scheduled time's first row is its last attempt). An `error` run
    (could not start) counts against the rate but has no duration.
    """
    outcome: dict[float, str] = {}
    for status, _, scheduled_for in rows:
        if scheduled_for not in outcome:
            if len(outcome) == n:
                break
            outcome[scheduled_for] = status
    return outcome, [d for status, d, _ in rows if status != "error"][:n]


def rate_and_median(outcome: dict[float, str], ran: list[float | None]) -> tuple[float | None, float | None]:
    """The success rate of `outcome` and the median of the durations in `ran`."""
    if not outcome:
        return None, None
    rate = sum(1 for status in outcome.values() if status == "success") / len(outcome)
    # sorted by hand: `statistics` imports decimal and fractions, which the CLI need not pay.
    values = sorted(d for d in ran if d is not None)
    if not values:
        return rate, None
    mid = len(values) // 2
    return rate, values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2
