"""The JSON shape of a run (SPEC section 2's RUN object) and of instants: the read side's.

Stores hand out `Run` records; `status --json`, `logs --json` and the daemon's answers turn
them into JSON here.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from cronsup.store.records import Run


def iso(t: float | None) -> str | None:
    """Epoch seconds as ISO 8601 with the local offset: 1764032400.0 -> '2025-11-25T02:00:00+01:00'.

    (That example in Europe/Berlin.)
    """
    if t is None:
        return None
    # From UTC rather than a naive local time, so an instant in a repeated DST hour gets
    # the offset it really had.
    return datetime.fromtimestamp(t, tz=timezone.utc).astimezone().isoformat(timespec="seconds")


def run_json(run: Run, output: bytes | None = None, truncated: bool | None = None) -> dict:
    """The RUN object of SPEC section 2; with `output`, also "output" and "output_truncated"
    (and "output_pruned": true when --keep-size removed the output)."""
    duration = run.duration_s
    data: dict[str, Any] = {
        "id": run.id,
        "job": run.job,
        "trigger": str(run.trigger),
        "attempt": run.attempt,
        "scheduled_for": iso(run.scheduled_for),
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
        "duration_s": None if duration is None else round(duration, 3),
        "status": str(run.status),
        "exit_code": run.exit_code,
        "signal": run.signal,
        "pid": run.pid,
        "host": run.host,
        "reason": run.reason,
        "cpu_s": None if run.cpu_s is None else round(run.cpu_s, 3),
        "max_rss": run.max_rss,
        "params": dict(run.params),  # `cronsup run JOB --env K=V`; {} for none
    }
    if output is not None:
        data["output"] = output.decode("utf-8", errors="replace")
        if truncated is None:
            truncated = bool(run.output_truncated)
        data["output_truncated"] = truncated
        if run.output_pruned:
            data["output_pruned"] = True
    return data
