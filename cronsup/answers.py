"""Control answers: what the daemon says to `cronsup run|reload|pause|resume|backfill|status` and to a ping."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from cronsup import backfilling, params, suggest
from cronsup.model import Now, Overlap, RunStatus, Trigger
from cronsup.control import Later
from cronsup.supervisor import Record, Start

if TYPE_CHECKING:
    from cronsup.daemon import Daemon

log = logging.getLogger("cronsup")


def answer(d: Daemon, request: dict, now: Now) -> dict | Later:
    """One request from `cronsup run|reload|pause|resume`: names a job, never a command.

    An error answer carries "kind" ("unknown_job", "stopping", "not_started") so the
    command can pick its exit status.
    """
    op = request["op"]
    if op == "status":  # built in a thread, never in the loop
        return d.statuses.answer(request)
    d._need_tick = True  # a request may start, pause or reload: decide again
    if op == "ping":
        return {"ok": True, "pid": d.pid}
    if op == "reload":
        reloaded = d.reload(now)
        return {"ok": True, "reloaded": reloaded, "config_error": d.config_error,
                "jobs": len(d.jobs.jobs), "jobs_file": d.jobs_path,
                "running_from": d.version.origin}
    name = request["job"]
    if name not in d.supervisor.jobs:
        hint = suggest.did_you_mean(name, d.supervisor.jobs)
        return {"ok": False, "kind": "unknown_job",
                "error": f"no job named {name!r} in {d.jobs_path}{hint}"}
    if op in ("pause", "resume"):
        was_paused = name in d.supervisor.paused
        if op == "pause":
            d.supervisor.pause(name)
        else:
            d.supervisor.resume(name)
        if was_paused != (op == "pause"):
            d._write(d.log.set_paused, name, op == "pause", now.wall)
            d._need_tick = True
            log.info("%s: %sd", name, op)
        since = (d._try(d.log.paused) or {}).get(name) if op == "pause" else None
        return {"ok": True, "changed": was_paused != (op == "pause"), "paused_since": since,
                "next_run": d.supervisor.next_run(name)}
    if d.supervisor.stopping:
        return {"ok": False, "kind": "stopping", "error": "the daemon is stopping"}
    if op == "backfill":
        return backfilling.request(d, request, now)
    if op == "backfill_cancel":
        return backfilling.cancel(d, request, now)
    newest = d._try(d.log.runs, name, limit=1) or []
    after_id = newest[0].id if newest else 0
    actions = d.supervisor.run_now(name, now, params.from_request(request.get("env", {})))
    ids = d.execute(actions, now)
    for action in actions:
        if not isinstance(action, (Start, Record)):
            continue  # a Kill of the run being replaced (overlap = "replace")
        if action.job.name == name and action.fire.trigger is Trigger.MANUAL and id(action) in ids:
            status = RunStatus.RUNNING if isinstance(action, Start) else action.status
            run_id = ids[id(action)]
            run = d.running.get(run_id)
            reason = action.reason if isinstance(action, Record) else None
            waiting = any(p.run_id == run_id for p in d.pending)  # for a free fd
            if isinstance(action, Start) and run is None and not waiting:
                status = RunStatus.ERROR
                found = d._try(d.log.run, run_id)
                reason = found.reason if found else None
            return {"ok": True, "run_id": run_id, "status": str(status), "reason": reason,
                    "pid": run.child.pid if run else None, "after_id": after_id}
    if d.supervisor.jobs[name].queued is not None:
        policy = d.supervisor.jobs[name].spec.overlap
        why = "the running run is stopped" if policy is Overlap.REPLACE else "the running run ends"
        return {"ok": True, "run_id": None, "status": "queued", "after_id": after_id,
                "reason": f"to start when {why} (overlap = \"{policy}\")"}
    return {"ok": False, "kind": "not_started",
            "error": f"{name} was not started (the run log refused the record; see the daemon's log)"}
