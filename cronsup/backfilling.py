"""The daemon's side of backfills: a request recorded and queued, cancelled, resumed at start-up, ended."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from cronsup import backfill, schedule
from cronsup.model import Now
from cronsup.params import scheduled_text
from cronsup.store import RunLogError
from cronsup.supervisor import EndBackfill

if TYPE_CHECKING:
    from cronsup.daemon import Daemon

log = logging.getLogger("cronsup")


def _going(d: Daemon, name: str) -> str:
    bf = d.supervisor.backfills[name]
    return (f"a backfill of {name} is going (backfill {bf.id}, {len(bf.slots):,} slots not started); "
            f"let it end, or stop it with `cronsup backfill --cancel {name}`")


def request(d: Daemon, request: dict, now: Now) -> dict:
    """`cronsup backfill JOB --from --to ...`: plan the slots, record them, queue them."""
    name = request["job"]
    spec = d.supervisor.jobs[name].spec
    max_parallel = request.get("max_parallel", 1)
    try:
        reprocess = backfill.Reprocess(request.get("reprocess", "none"))
    except ValueError:
        return {"ok": False, "kind": "usage", "error": "--reprocess must be none, failed or all"}
    if not 1 <= max_parallel <= backfill.MAX_PARALLEL:
        return {"ok": False, "kind": "usage", "error": f"--max-parallel must be 1 to {backfill.MAX_PARALLEL}"}
    try:
        cron = backfill.calendar(spec)
        zone = schedule.load_zone(spec.timezone)
        start = backfill.parse_time(request.get("from", ""), zone, "--from")
        end = backfill.parse_time(request.get("to", ""), zone, "--to")
        backfill.check_range(cron, zone, start, end, bool(request.get("yes")))
    except backfill.BackfillError as e:
        return {"ok": False, "kind": "usage", "error": str(e)}
    if name in d.supervisor.backfills:
        return {"ok": False, "kind": "busy", "error": _going(d, name)}
    try:
        slots = backfill.plan(backfill.times(cron, zone, start, end),
                              d.log.runs_scheduled_between(name, start, end), reprocess)
        to_run = [(s.scheduled_for, s.attempt) for s in slots if s.run]
        answer = {"ok": True, "backfill_id": None, "slots": len(slots), "to_run": len(to_run),
                  "skipped": len(slots) - len(to_run), "from": start, "to": end,
                  "timezone": spec.timezone}
        if not to_run:
            return answer
        # In the run log before the first starts: a restarted daemon goes on with them.
        backfill_id = d.log.add_backfill(name, range_from=start, range_to=end, reprocess=str(reprocess),
                                         max_parallel=max_parallel, created_at=now.wall, slots=to_run,
                                         skipped=len(slots) - len(to_run))
    except RunLogError as e:
        return {"ok": False, "error": f"cannot record the backfill: {e}"}
    d.supervisor.add_backfill(backfill_id, name, to_run, max_parallel)
    d._need_tick = True
    log.info("%s: backfill %d of %d scheduled times from %s to %s (%d skipped, reprocess %s, "
             "at most %d at once)", name, backfill_id, len(to_run), scheduled_text(start, zone),
             scheduled_text(end, zone), len(slots) - len(to_run), reprocess, max_parallel)
    return answer | {"backfill_id": backfill_id}


def cancel(d: Daemon, request: dict, now: Now) -> dict:
    """`cronsup backfill --cancel JOB`: no more of its slots start; running ones go on."""
    name = request["job"]
    bf = d.supervisor.cancel_backfill(name)
    if bf is None:
        return {"ok": False, "kind": "usage", "error": f"no backfill of {name} is going"}
    left = len(bf.slots)
    d._write(d.log.end_backfill, bf.id, "cancelled", now.wall)
    running = sum(1 for run in d.supervisor.runs.get(name, []) if run.fire.backfill == bf.id)
    log.info("%s: backfill %d cancelled: %d slots not started, %d running go on", name, bf.id, left, running)
    return {"ok": True, "backfill_id": bf.id, "not_started": left, "running": running}


def resume(d: Daemon, now: Now) -> None:
    """At start-up: the backfills a previous daemon left going continue with the slots
    that have no run yet (a slot's run is recorded with it, so none runs twice)."""
    try:
        going = d.log.backfills(active=True)
    except RunLogError as e:
        log.error("cannot read the backfills that were going: %s", e)
        return
    for bf in reversed(going):  # oldest first
        if bf.job not in d.supervisor.jobs or bf.job in d.supervisor.backfills:
            why = "the job is no longer in the jobs file" if bf.job not in d.supervisor.jobs \
                else "another backfill of the job is going"
            log.warning("%s: backfill %d cancelled: %s", bf.job, bf.id, why)
            d._write(d.log.end_backfill, bf.id, "cancelled", now.wall)
            continue
        left = [(s.scheduled_for, s.attempt) for s in d.log.backfill_slots(bf.id) if s.run_id is None]
        d.supervisor.add_backfill(bf.id, bf.job, left, bf.max_parallel)
        log.info("%s: backfill %d goes on: %d of %d slots not started yet", bf.job, bf.id, len(left), bf.slots)


def ended(d: Daemon, ends: list[EndBackfill], now: Now) -> None:
    for end in ends:
        d._write(d.log.end_backfill, end.backfill_id, end.state, now.wall)
        log.info("%s: backfill %d %s%s", end.job, end.backfill_id, end.state,
                 f" ({end.reason})" if end.reason else "")
