"""What each page of the web view shows, as plain dicts: the HTML templates and the /api/ twins read the same.

Each page costs a constant number of store queries, whatever the number of jobs.
"""

from __future__ import annotations

import datetime as dt

from cronsup import report, units
from cronsup.model import AfterJobs, Cron, Every, JobSpec, Reboot, RunStatus
from cronsup.runjson import iso
from cronsup.store import FAILED_STATUSES, RAN_STATUSES, JobRow, Run, RunMark, RunReader
from cronsup.store.rows import outcomes, rate_and_median
from cronsup.web.source import (  # noqa: F401 (app.py reads these through this module too)
    _NOT_AN_END,
    CHART_RUNS,
    OUTPUT_MAX,
    OUTPUT_MORE,
    OUTPUT_PART,
    PAGE_RUNS,
    STATS_RUNS,
    STRIP_RUNS,
    BadRequest,
    NotFound,
    Source,
    Stamps,
    brief,
    check_readable,
    duration,
    job_url,
    mark_took,
    parse_id,
    parse_statuses,
    parse_when,
    schedule_zone,
    shown,
    zone_name,
)
from cronsup.web.svg import strip_svg


def marks(found: list[RunMark], now: float, stamps: Stamps, kept: dict[RunMark, dict] | None = None) -> list[dict]:
    """A strip's runs for JSON, oldest first: id, status, start and duration. `kept` keeps
    an ended run's item between calls (as strip_svg's cells)."""
    out = []
    for m in reversed(found):
        item = kept.get(m) if kept is not None else None
        if item is None:
            item = {"id": m.id, "status": m.status,
                    "started_at": stamps.iso(m.started_at if m.started_at is not None else m.scheduled_for),
                    "duration_s": mark_took(m, now)}
            if kept is not None and m.status != "running":
                kept[m] = item
        out.append(item)
    return out


_COUNTED = frozenset(str(s) for s in (*RAN_STATUSES, RunStatus.ERROR))


def stats_from_marks(found: list[RunMark], complete: bool, n: int = STATS_RUNS) -> tuple[float | None, float | None] | None:
    """A job's success rate and median duration over its last `n` runs, as the store's
    stats_many gives them (the same rule; tests/test_web.py checks they agree), from the
    strip's runs (newest first) when those settle it; None when they do not. `complete`:
    `found` are all of the job's runs."""
    rows = [(m.status, m.finished_at - m.started_at if m.finished_at is not None and m.started_at is not None
             else None, m.scheduled_for) for m in found if m.status in _COUNTED]
    if len(rows) >= 3 * n:  # stats_many reads a job's last 3n counted runs
        rows, complete = rows[:3 * n], True
    # The rate is settled once n invocations are seen; the median once n runs that ran are.
    outcome, ran = outcomes(rows, n)
    if not complete and (len(outcome) < n or len(ran) < n):
        return None
    return rate_and_median(outcome, ran)


def overview(src: Source, now: float, query: str = "", sort: str = "file", desc: bool = False,
             html: bool = False) -> dict:
    """Every job: schedule, next run, last result, rate and median, its last runs, what runs.
    `html`: each job's strip as SVG ("strip_svg") instead of a list ("strip")."""
    runlog = src.open()
    try:
        specs, errors = src.specs(runlog)
        daemon = src.daemon(runlog, now)
        state, pid = daemon.state, daemon.pid
        running_daemon = pid is not None and state is not None
        rows: list[JobRow] = runlog.jobs() if running_daemon else []
        if not rows:
            rows = [JobRow(name=s.name, schedule=s.schedule.text, command=s.command,
                           description=s.description, next_run=src.next_run(s, now),
                           enabled=s.enabled, line=s.line) for s in specs]
        by_spec = {s.name: s for s in specs}
        names = [row.name for row in rows]
        active: dict[str, list[Run]] = {}
        paused: dict[str, float] = {}
        stats: dict[str, tuple[float | None, float | None]] = {}
        recent: dict[str, list[RunMark]] = {}
        last_brief: dict[str, dict | None] = {}
        if runlog is not None:
            for run in runlog.running():
                active.setdefault(run.job, []).append(run)
            for name in sorted(set(active) - set(names)):  # runs of a job a reload removed
                rows.append(JobRow(name=name, schedule="-", command="", next_run=None, enabled=False,
                                   line=0, description="removed from the jobs file; this run goes on until it ends"))
                names.append(name)
            paused = runlog.paused()
            recent = src.recent(runlog, names, set(active), now)
            settled = {n for n in names if n not in active}
            todo = [n for n in names if src.kept("stats", n, recent[n]) is None]
            # Mostly from the strips' runs just read; the store reads the rest.
            fresh = {}
            for n in todo:
                got = stats_from_marks(recent[n], len(recent[n]) < STRIP_RUNS)
                if got is not None:
                    fresh[n] = got
            rest = [n for n in todo if n not in fresh]
            fresh.update(runlog.stats_many(rest, STATS_RUNS) if rest else {})
            for n in todo:
                src.keep("stats", n, recent[n], fresh[n], n in settled)
            stats = {n: fresh[n] if n in fresh else src.kept("stats", n, recent[n]) for n in names}
            # LAST is the newest run that ran to an end, as in `status`.
            todo = [n for n in names if src.kept("last", n, recent[n]) is None]
            got = _last_finished(runlog, todo, recent)
            for n in todo:  # kept as shown: an ended run's brief does not change with `now`
                last_brief[n] = brief(got[n], now) if n in got else None
                src.keep("last", n, recent[n], last_brief[n] or False, n in settled)
            for n in names:
                if n not in last_brief:
                    last_brief[n] = src.kept("last", n, recent[n]) or None
        stamps = Stamps()
        system_zone = zone_name()
        jobs = []
        cells, items = src.strip_cells()
        for row in rows:
            last = last_brief.get(row.name)
            rate, median = stats.get(row.name, (None, None))
            spec = by_spec.get(row.name)
            found = recent.get(row.name, [])
            if row.next_run:
                next_iso, next_shown = src.instant(row.next_run)
            else:
                next_iso = iso(row.next_run)
                next_shown = "never" if isinstance(spec and spec.schedule, Cron) else _no_time(spec)
            kind = "svg" if html else "json"
            strip = src.kept(kind, row.name, found)
            if strip is None:
                strip = strip_svg(found, now, stamps, STRIP_RUNS, cells) if html else marks(found, now, stamps, items)
                src.keep(kind, row.name, found, strip, row.name not in active)
            jobs.append({
                "name": row.name, "url": job_url(row.name), "description": row.description,
                "schedule": row.schedule, "zone": schedule_zone(spec, system_zone), "command": row.command,
                "enabled": row.enabled, "paused": row.name in paused,
                "next_run": next_iso, "shown_next": next_shown,
                "last": last,
                "success_rate": None if rate is None else round(rate, 3),
                "median_duration_s": None if median is None else round(median, 3),
                "shown_median": duration(median),
                **({"strip_svg": strip} if html else {"strip": strip}),
                "running": [brief(r, now) for r in active.get(row.name, [])],
            })
        src.trim_cells(recent)
        total = len(jobs)
        if query:
            needle = query.lower()
            jobs = [j for j in jobs if needle in j["name"].lower()]
        jobs = _sorted(jobs, sort, desc)
        return {
            "daemon": {"running": pid is not None, "pid": pid,
                       "started_at": iso(state.started_at) if state and pid else None,
                       "last_seen": iso(state.last_seen) if state else None,
                       "config_error": state.config_error if state and pid else None,
                       "node": daemon.node, "nodes_up": daemon.nodes_up},
            "run_log": src.db, "run_log_exists": runlog is not None, "jobs_file": src.jobs,
            "config_errors": errors, "query": query, "sort": sort, "desc": desc,
            "stats_over_runs": STATS_RUNS, "strip_runs": STRIP_RUNS, "jobs_total": total,
            "running": [r for j in jobs for r in j["running"]],
            "jobs": jobs, "zone": system_zone, "now": iso(now),
        }
    finally:
        if runlog is not None:
            runlog.close()


def _last_finished(runlog, jobs: list[str], recent: dict[str, list[RunMark]]) -> dict[str, Run]:
    """Each job's newest run that ran to an end (as `status` finds it: within its last 50),
    by id from its strip's runs where one is there; the store looks for the others."""
    ended, rest = {}, []
    for n in jobs:
        m = next((m for m in recent[n] if m.status not in _NOT_AN_END), None)
        if m is not None:
            ended[n] = m.id
        elif len(recent[n]) >= STRIP_RUNS:  # older runs than the strip's may hold it
            rest.append(n)
    by_id = runlog.runs_by_id(list(ended.values())) if ended else {}
    got = {n: by_id[i] for n, i in ended.items() if i in by_id}
    if rest:
        got.update(runlog.last_finished(rest, _NOT_AN_END, within=50))
    return got


SORTS = ("file", "name", "next", "last", "status", "rate", "median")


def _sorted(jobs: list[dict], sort: str, desc: bool) -> list[dict]:
    if sort not in SORTS:
        raise BadRequest(f"sort={sort!r}: one of {', '.join(SORTS)}")
    if sort == "file":
        return list(reversed(jobs)) if desc else jobs
    keys = {
        "name": lambda j: (0, j["name"].lower()),
        "next": lambda j: (j["next_run"] is None, j["next_run"] or ""),
        "last": lambda j: (j["last"] is None, (j["last"] or {}).get("started_at") or ""),
        "status": lambda j: (j["last"] is None, (j["last"] or {}).get("status") or ""),
        "rate": lambda j: (j["success_rate"] is None, j["success_rate"] or 0),
        "median": lambda j: (j["median_duration_s"] is None, j["median_duration_s"] or 0),
    }
    key = keys[sort]
    present = [j for j in jobs if not key(j)[0]]
    absent = [j for j in jobs if key(j)[0]]  # jobs without a value go last either way
    return sorted(present, key=key, reverse=desc) + absent


def _no_time(spec: JobSpec | None) -> str:
    if spec is None:
        return "-"
    if isinstance(spec.schedule, AfterJobs):
        return "after " + ", ".join(spec.after)
    if isinstance(spec.schedule, Reboot):
        return "at boot"
    if isinstance(spec.schedule, Every):
        return "when the daemon runs"
    return "-"


def job(src: Source, name: str, now: float, *, status: str | None = None, since: str | None = None,
        until: str | None = None, before: str | None = None) -> dict:
    """One job: its spec, next fires, a chart of durations and a page of its runs."""
    statuses = parse_statuses(status)
    t_since, t_until = parse_when(since, now, "since"), parse_when(until, now, "until")
    before_id = parse_id(before, "before")
    runlog = src.open()
    try:
        specs, errors = src.specs(runlog)
        by_spec = {s.name: s for s in specs}
        spec = by_spec.get(name)
        rows = {row.name: row for row in runlog.jobs()} if runlog and src.daemon(runlog, now).pid else {}
        row = rows.get(name)
        runs = runlog.runs_filtered(name, statuses=statuses, since=t_since, until=t_until,
                                    before_id=before_id, limit=PAGE_RUNS + 1) if runlog else []
        if spec is None and row is None and not runs and not (runlog and runlog.runs(name, limit=1)):
            raise NotFound(f"no job {name!r} in the jobs file or the run log")
        chart = runlog.runs_filtered(name, statuses=[*RAN_STATUSES, RunStatus.RUNNING], since=t_since,
                                     until=t_until, limit=CHART_RUNS) if runlog else []
        rate, median = runlog.stats(name, STATS_RUNS) if runlog else (None, None)
        retried = runlog.retried_ok(runs) if runlog else {}
        paused = name in (runlog.paused() if runlog else {})
    finally:
        if runlog is not None:
            runlog.close()
    more = len(runs) > PAGE_RUNS
    runs = runs[:PAGE_RUNS]
    table = []
    for run in runs:
        item = brief(run, now)
        item["retried_ok"] = run.id in retried
        table.append(item)
    next_run = row.next_run if row else (report.next_run(spec, now) if spec else None)
    return {
        "name": name, "url": job_url(name),
        "description": spec.description if spec else (row.description if row else ""),
        "schedule": spec.schedule.text if spec else (row.schedule if row else "-"),
        "zone": schedule_zone(spec), "command": spec.command if spec else (row.command if row else ""),
        "line": spec.line if spec else None, "jobs_file": src.jobs, "in_jobs_file": spec is not None,
        "enabled": spec.enabled if spec else (row.enabled if row else False), "paused": paused,
        "options": options(spec) if spec else [],
        "next_run": iso(next_run), "next_fires": next_fires(spec, next_run, now),
        "upstream": [{"name": n, "url": job_url(n)} for n in (spec.after if spec else ())],
        "downstream": [{"name": s.name, "url": job_url(s.name)} for s in specs if name in s.after],
        "success_rate": None if rate is None else round(rate, 3),
        "median_duration_s": None if median is None else round(median, 3),
        "shown_median": duration(median), "stats_over_runs": STATS_RUNS,
        "filters": {"status": status or "", "since": since or "", "until": until or "", "before": before or ""},
        "runs": table, "more": more,
        "older_before": runs[-1].id if more and runs else None,
        "chart": [brief(r, now) for r in reversed(chart)],
        "chart_limit": CHART_RUNS, "config_errors": errors, "zone_shown": zone_name(), "now": iso(now),
    }


_OPTION_FIELDS = ("timeout", "kill_grace", "overlap", "retries", "retry_delay", "retry_backoff",
                  "retry_max_delay", "retry_jitter", "success_codes", "after", "workdir", "user",
                  "shell", "timezone", "jitter", "catchup", "output_limit", "mailto", "enabled")
_DURATIONS = {"timeout", "kill_grace", "retry_delay", "retry_max_delay", "jitter"}


def options(spec: JobSpec) -> list[dict]:
    """Every option in force for the job, defaults included. Environment values are not
    shown (they often hold secrets): only their names."""
    found = []
    for key in _OPTION_FIELDS:
        value = getattr(spec, key)
        if key in _DURATIONS:
            text = "none" if value is None else units.format_duration(value)
        elif key == "output_limit":
            text = units.format_size(value)
        elif isinstance(value, tuple):
            text = ", ".join(str(v) for v in value) or "-"
        elif value is None:
            text = {"workdir": "the user's home", "user": "the daemon's user",
                    "timezone": f"the system's ({zone_name()})", "mailto": "no mail"}.get(key, "-")
        else:
            text = str(value).lower() if isinstance(value, bool) else str(value)
        found.append({"key": key, "value": text})
    env = [k for k, _ in spec.environment]
    found.append({"key": "environment", "value": ", ".join(env) + " (values not shown)" if env else "-"})
    return found


def next_fires(spec: JobSpec | None, next_run: float | None, now: float, n: int = 5) -> list[dict]:
    """The next `n` fire times, each with its zone; [] for a job without times of its own."""
    if spec is None:
        return []
    times: list[float] = []
    if isinstance(spec.schedule, Cron):
        from cronsup import schedule

        zone = schedule.load_zone(spec.timezone)
        for fire in schedule.fire_times(spec.schedule, dt.datetime.fromtimestamp(now, zone), zone):
            times.append(fire.timestamp())
            if len(times) == n:
                break
        return [{"at": iso(t), "shown": dt.datetime.fromtimestamp(t, zone).strftime("%Y-%m-%d %H:%M:%S %Z")}
                for t in times]
    if isinstance(spec.schedule, Every) and next_run is not None:
        times = [next_run + i * spec.schedule.seconds for i in range(n)]
    return [{"at": iso(t), "shown": shown(t)} for t in times]


def run(src: Source, run_id: int, now: float, offset: int = 0) -> dict:
    """One run in full, with a part of its output (OUTPUT_PART bytes from `offset`)."""
    runlog = src.open()
    if runlog is None:
        raise NotFound(f"no run {run_id}: there is no run log yet at {src.db}")
    try:
        found = runlog.run(run_id)
        if found is None:
            raise NotFound(f"no run {run_id} in the run log")
        out = output(runlog, found, offset)
        retried = runlog.retried_ok([found])
        newer = runlog.runs_filtered(found.job, limit=1, since=None, before_id=None)
        superseded = run_id in runlog.superseded([found])
        notes = notifications(runlog, found)
    finally:
        runlog.close()
    data = brief(found, now)
    data.update({
        "job_url": job_url(found.job), "retried_ok": retried.get(run_id), "final": not superseded,
        "signal_name": units.signal_name(found.signal) if found.signal else None,
        "shown_finished": shown(found.finished_at), "shown_scheduled": shown(found.scheduled_for),
        "shown_cpu": None if found.cpu_s is None else f"{found.cpu_s:.2f}s",
        "shown_memory": None if found.max_rss is None else units.format_size(found.max_rss),
        "output": out, "notifications": notes, "newest_of_job": bool(newer and newer[0].id == run_id),
        "zone_shown": zone_name(), "now": iso(now),
    })
    return data


def output(runlog: RunReader, found: Run, offset: int, size: int = OUTPUT_PART) -> dict:
    """A part of a run's output from `offset` as (text, classes) segments, with where it ends.

    While the run goes on, a part ends at the last whole line (a line or a UTF-8 character cut
    by a flush comes whole in the next part). Colours set earlier in the output carry over.
    """
    from cronsup.web import ansi

    part = runlog.output_part(found.id, offset, size)
    running = found.status is RunStatus.RUNNING
    if part is None:
        return {"offset": offset, "next": offset, "size": 0, "truncated": False, "text": "", "segments": [],
                "running": running, "pruned": found.output_pruned, "done": not running}
    data, total, truncated = part
    if offset > total:  # the middle of a long output was cut while it ran: start again
        return {"offset": offset, "next": 0, "size": total, "truncated": truncated, "text": "", "segments": [],
                "running": running, "pruned": found.output_pruned, "done": False, "restart": True}
    end = len(data)
    if offset + end < total or running:
        cut = data.rfind(b"\n") + 1
        end = cut if cut else (end if offset + end < total and end == size else 0)
    data = data[:end]
    state = ansi.State()
    if offset:
        prefix = runlog.output_part(found.id, 0, offset)
        state = ansi.state_after(prefix[0].decode("utf-8", errors="replace")) if prefix else state
    text = data.decode("utf-8", errors="replace")
    nxt = offset + end
    return {"offset": offset, "next": nxt, "size": total, "truncated": truncated, "text": text,
            "segments": ansi.segments(text, state), "running": running, "pruned": found.output_pruned,
            "done": not running and nxt >= total}


def notifications(runlog: RunReader, found: Run) -> list[dict]:
    """The run's alerts (the outbox) with every delivery attempt, oldest first, for the run
    page's `notifications` block. Each item: {"receiver", "event", "at", "ok", "detail"};
    the receiver is shown as scheme and host only, as everywhere (its path is a secret)."""
    rows = []
    for delivery in runlog.deliveries(found.id):
        item = delivery.item
        receiver = f"{item.channel} {item.shown}"
        for attempt in delivery.attempts:
            detail = attempt.answer
            if attempt.next_try is not None:
                detail += f"; next try {iso(attempt.next_try)}"
            rows.append({"receiver": receiver, "event": item.event, "at": iso(attempt.at),
                         "ok": attempt.ok, "detail": detail})
        if not delivery.attempts:
            waiting = {"dropped": "dropped: the outbox was full"}.get(
                item.state, f"waiting for its first try ({item.state})")
            rows.append({"receiver": receiver, "event": item.event, "at": iso(item.created_at),
                         "ok": False, "detail": waiting})
    return rows


def failures(src: Source, now: float, *, since: str | None = None, until: str | None = None,
             before: str | None = None) -> dict:
    """Final failures of every job in a period, newest first: attempts a retry followed, or
    whose retry succeeded, are not final and are left out."""
    t_since = parse_when(since or "24h", now, "since")
    t_until = parse_when(until, now, "until")
    before_id = parse_id(before, "before")
    runlog = src.open()
    try:
        found = runlog.runs_filtered(None, statuses=list(FAILED_STATUSES), since=t_since, until=t_until,
                                     before_id=before_id, limit=PAGE_RUNS + 1) if runlog else []
        more = len(found) > PAGE_RUNS
        found = found[:PAGE_RUNS]
        gone = (runlog.superseded(found) | set(runlog.retried_ok(found))) if runlog and found else set()
    finally:
        if runlog is not None:
            runlog.close()
    return {
        "since": iso(t_since), "until": iso(t_until), "shown_since": shown(t_since),
        "shown_until": shown(t_until) if t_until else "now",
        "filters": {"since": since or "24h", "until": until or "", "before": before or ""},
        "runs": [brief(r, now) for r in found if r.id not in gone],
        "more": more, "older_before": found[-1].id if more and found else None,
        "zone_shown": zone_name(), "now": iso(now),
    }


def graph(src: Source, now: float) -> dict:
    """The `after` chains: nodes (jobs in a chain, by depth) and edges upstream -> downstream."""
    runlog = src.open()
    try:
        specs, errors = src.specs(runlog)
        names = {s.name for s in specs}
        linked = {s.name for s in specs if s.after} | {a for s in specs for a in s.after if a in names}
        chained = [s for s in specs if s.name in linked]
        last: dict[str, Run] = {}
        if runlog is not None and chained:
            last = runlog.last_finished([s.name for s in chained], _NOT_AN_END, within=50)
    finally:
        if runlog is not None:
            runlog.close()
    by_name = {s.name: s for s in chained}
    depth: dict[str, int] = {}

    def level(name: str, seen: tuple[str, ...] = ()) -> int:
        if name in depth:
            return depth[name]
        ups = [a for a in by_name[name].after if a in by_name and a not in seen]
        depth[name] = 0 if not ups else 1 + max(level(a, (*seen, name)) for a in ups)
        return depth[name]

    nodes = []
    for s in chained:
        run_ = last.get(s.name)
        nodes.append({"name": s.name, "url": job_url(s.name), "depth": level(s.name),
                      "schedule": s.schedule.text, "status": str(run_.status) if run_ else None,
                      "last": brief(run_, now) if run_ else None})
    edges = [{"from": a, "to": s.name} for s in chained for a in s.after if a in by_name]
    return {"nodes": nodes, "edges": edges, "unchained": len(specs) - len(chained),
            "config_errors": errors, "now": iso(now)}
