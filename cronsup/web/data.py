"""What each page of the web view shows, as plain dicts: the HTML templates and the /api/ twins read the same.

Everything here reads: the run store opened read-only for one request, and the jobs file.
Each page costs a constant number of store queries, whatever the number of jobs.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
import urllib.parse
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup, escape

from cronsup import paths, report, units
from cronsup.model import AfterJobs, Cron, Every, JobSpec, Reboot, RunStatus
from cronsup.runjson import iso, run_json
from cronsup.store import (
    FAILED_STATUSES,
    RAN_STATUSES,
    DaemonState,
    JobRow,
    Run,
    RunLogError,
    RunMark,
    RunReader,
)
from cronsup.upkeep import HEARTBEAT

STRIP_RUNS = 30  # the overview's strip of each job's last runs
STATS_RUNS = report.STATS_RUNS  # success rate and median over a job's last this many runs
CHART_RUNS = 500  # the job page's chart: at most this many runs of the range
PAGE_RUNS = 50  # rows of a runs table
OUTPUT_PART = 32 * 1024  # output bytes a run page carries: small, for a quick first paint
OUTPUT_MORE = 256 * 1024  # what "load more" and the live view ask for at once (at most OUTPUT_MAX)
OUTPUT_MAX = 1024 * 1024
_NOT_AN_END = (RunStatus.RUNNING, RunStatus.SKIPPED, RunStatus.MISSED)


class NotFound(Exception):
    """No such job or run: a 404 with this message."""


class BadRequest(Exception):
    """A query parameter that makes no sense: a 400 with this message."""


@dataclass
class Source:
    """Where the view reads: the run log, the jobs file and the daemon's state directory."""

    db: str
    jobs: str
    state_dir: str | None = None
    system: bool = False

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._parsed: tuple[tuple, list[JobSpec], list[str]] | None = None
        # What the overview made of each job's last runs, kept while those runs are the same
        # ended runs (a finished run never changes): the strip as SVG and as JSON, the success
        # rate and median, the last result. The overview of 1,000 jobs then redoes only the
        # jobs whose runs moved.
        self._kept: dict[tuple[str, str], tuple[list[RunMark], Any]] = {}
        self._next: dict[str, tuple[JobSpec, float | None, float]] = {}

    def next_run(self, spec: JobSpec, now: float) -> float | None:
        """A stopped daemon's job's next fire from its spec, kept until it has passed."""
        entry = self._next.get(spec.name)
        if entry is None or entry[0] != spec or (entry[1] is not None and entry[1] <= now) or entry[2] > now:
            entry = self._next[spec.name] = (spec, report.next_run(spec, now), now)
        return entry[1]

    def kept(self, kind: str, job: str, found: list[RunMark]) -> Any:
        """What was kept for `found` (the job's last runs as now read), or None."""
        entry = self._kept.get((kind, job))
        return entry[1] if entry is not None and entry[0] == found else None

    def keep(self, kind: str, job: str, found: list[RunMark], value: Any, settled: bool) -> None:
        """Keep `value` while the job's last runs are `found`; only when `settled` (no run of
        the job is running: its end would change what was made)."""
        if not settled:
            self._kept.pop((kind, job), None)
            return
        if len(self._kept) > 200_000:
            self._kept.clear()
        self._kept[(kind, job)] = (found, value)

    def open(self) -> RunReader | None:
        """The run log read-only for one request, None while none exists."""
        return report.open_log(self.db)

    def daemon_pid(self, state: DaemonState | None, now: float) -> int | None:
        """The running daemon's pid, None when none runs. A view whose user may read the run
        log but not the daemon's lock (0600, root's) goes by the daemon's heartbeat instead."""
        pid = report.daemon_pid(self.db, self.state_dir)
        if pid is not None or state is None:
            return pid
        lock = paths.daemon_lock(self.db, self.state_dir)
        if os.path.exists(lock) and not os.access(lock, os.R_OK) and state.stopped_at is None \
                and (state.last_seen or state.started_at) >= now - 3 * HEARTBEAT:
            return state.pid
        return None

    def specs(self, runlog: RunReader | None) -> tuple[list[JobSpec], list[str]]:
        """The jobs of the jobs file and its errors (one line each). A bad file gives the
        last good version the daemon stored, so options and chains still show."""
        from cronsup import jobsfile

        try:
            st = os.stat(self.jobs)
            stamp: tuple = (st.st_ino, st.st_size, st.st_mtime_ns)
        except OSError:
            stamp = ("missing",)
        with self._lock:
            if self._parsed is not None and self._parsed[0] == stamp:
                return self._parsed[1], self._parsed[2]
        errors: list[str] = []
        specs: list[JobSpec] = []
        try:
            specs = list(jobsfile.load(self.jobs, system=self.system).jobs)
        except jobsfile.JobsfileErrors as e:
            errors = [str(error) for error in e.errors]
        except jobsfile.JobsfileRefused as e:
            errors = [str(e)]
        except OSError as e:
            errors = [f"{self.jobs}: cannot read the jobs file: {e.strerror}"]
        if errors and runlog is not None:
            good = runlog.good_jobs()
            if good is not None:
                try:
                    specs = list(jobsfile.parse_bytes(good.source, good.path, system=good.system).jobs)
                except (jobsfile.JobsfileErrors, ValueError):
                    specs = []
            stamp = (*stamp, good.loaded_at if good else None)
        with self._lock:
            self._parsed = (stamp, specs, errors)
        return specs, errors


# -- formatting ------------------------------------------------------------------------------


def zone_name() -> str:
    """The zone times are shown in: TZ, else /etc/localtime's name, else UTC."""
    tz = os.environ.get("TZ", "").lstrip(":")
    if tz:
        return tz
    try:
        target = os.readlink("/etc/localtime")
        if "zoneinfo/" in target:
            return target.split("zoneinfo/", 1)[1]
    except OSError:
        pass
    return "UTC"


def shown(t: float | None) -> str:
    """An instant as people read it, with its zone: '2026-12-01 22:07:29 CET'."""
    if t is None:
        return "-"
    from cronsup import schedule

    return dt.datetime.fromtimestamp(t, schedule.load_zone(None)).strftime("%Y-%m-%d %H:%M:%S %Z")


def duration(seconds: float | None) -> str:
    return "-" if seconds is None else units.format_duration(seconds)


class Stamps:
    """Instants formatted fast for thousands of strip cells: the zone's offset is looked up
    once an hour of instants and each date once, the rest is arithmetic."""

    def __init__(self) -> None:
        from cronsup import schedule

        self.zone = schedule.load_zone(None)
        self._hours: dict[int, tuple[float, str, str]] = {}
        self._days: dict[int, str] = {}

    def _parts(self, t: float) -> tuple[str, str, str, str]:
        key = int(t // 3600)
        hour = self._hours.get(key)
        if hour is None:
            local = dt.datetime.fromtimestamp(key * 3600, self.zone)
            off = local.utcoffset().total_seconds()
            a = abs(int(off))
            name = str(escape(local.tzname() or ""))  # (shown in strips' markup as it is)
            hour = self._hours[key] = (off, name, f"{'+' if off >= 0 else '-'}{a // 3600:02d}:{a % 3600 // 60:02d}")
        off, name, iso_off = hour
        local_t = t + off
        day_n = int(local_t // 86400)
        day = self._days.get(day_n)
        if day is None:
            day = self._days[day_n] = (dt.date(1970, 1, 1) + dt.timedelta(days=day_n)).isoformat()
        sod = int(local_t - day_n * 86400)
        return day, f"{sod // 3600:02d}:{sod % 3600 // 60:02d}:{sod % 60:02d}", name, iso_off

    def iso(self, t: float) -> str:
        day, clock_, _, off = self._parts(t)
        return f"{day}T{clock_}{off}"

    def shown(self, t: float) -> str:
        day, clock_, name, _ = self._parts(t)
        return f"{day} {clock_} {name}"


def marks(found: list[RunMark], now: float, stamps: Stamps) -> list[dict]:
    """A strip's runs for JSON, oldest first: id, status, start and duration."""
    out = []
    for m in reversed(found):
        out.append({"id": m.id, "status": m.status,
                    "started_at": stamps.iso(m.started_at if m.started_at is not None else m.scheduled_for),
                    "duration_s": _took(m, now)})
    return out


def _took(m: RunMark, now: float) -> float | None:
    if m.started_at is None:
        return None
    if m.finished_at is None:
        return round(now - m.started_at, 3) if m.status == "running" else None
    return round(m.finished_at - m.started_at, 3)


_STATUSES = frozenset(str(status) for status in RunStatus)


def strip_svg(found: list[RunMark], now: float, stamps: Stamps, slots: int) -> Markup:
    """A strip's runs as SVG for the page: each cell links to its run and names it on hover.
    Built in one pass, as 1,000 jobs make 30,000 cells. Nothing in a cell comes from a job:
    ids are numbers, statuses one of RunStatus, times and zone names ours (escaped once)."""
    start = slots - len(found)
    cells = []
    for i, m in enumerate(reversed(found)):
        status = m.status if m.status in _STATUSES else "unknown"
        took = _took(m, now)
        when = stamps.shown(m.started_at if m.started_at is not None else m.scheduled_for)
        cells.append(f'<a href="/runs/{int(m.id)}"><rect class="s-{status}" x="{(start + i) * 10}">'
                     f"<title>run {int(m.id)} · {status} · {when} · {duration(took)}"
                     f"{' so far' if status == 'running' else ''}</title></rect></a>")
    width = slots * 10 - 2
    return Markup(f'<svg class="strip" width="{width}" height="16" viewBox="0 0 {width} 16" role="img" '
                  f'aria-label="last {len(found)} runs">{"".join(cells)}</svg>')


def parse_when(text: str | None, now: float, what: str) -> float | None:
    """A time filter: empty, an ISO date or time (local unless it has an offset), or a
    duration meaning that long ago ('24h', '7d')."""
    if not text:
        return None
    text = text.strip()
    try:
        return now - units.parse_duration(text)
    except ValueError:
        pass
    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError:
        raise BadRequest(f"{what}={text!r}: give a date or time such as 2026-11-25 or "
                         "2026-11-25T02:00, or a duration ago such as 24h or 7d") from None
    if t.tzinfo is None:
        from cronsup import schedule

        t = t.replace(tzinfo=schedule.load_zone(None))
    return t.timestamp()


def parse_statuses(text: str | None) -> list[RunStatus] | None:
    """`status=failed,timeout` or `status=failures` (every status that is not a success)."""
    if not text:
        return None
    found: list[RunStatus] = []
    for word in text.split(","):
        word = word.strip()
        if word == "failures":
            found += FAILED_STATUSES
            continue
        try:
            found.append(RunStatus(word))
        except ValueError:
            raise BadRequest(f"status={word!r}: one of {', '.join(s.value for s in RunStatus)} "
                             "or failures") from None
    return list(dict.fromkeys(found))


def parse_id(text: str | None, what: str) -> int | None:
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise BadRequest(f"{what}={text!r}: a run id (a number)") from None


def job_url(name: str) -> str:
    """A job page's path, its name quoted (a name may hold '?', '#' or '%')."""
    return "/jobs/" + urllib.parse.quote(name, safe="")


def brief(run: Run, now: float) -> dict:
    """A run for tables, strips and charts: its JSON plus what a page shows of it."""
    data = run_json(run)
    took = run.duration_s
    if run.status is RunStatus.RUNNING and run.started_at is not None:
        took = now - run.started_at
    data["url"] = f"/runs/{run.id}"
    data["job_url"] = job_url(run.job)
    data["shown_start"] = shown(run.started_at or run.scheduled_for)
    data["shown_took"] = duration(took) + (" so far" if run.status is RunStatus.RUNNING else "")
    data["due_only"] = run.started_at is None
    return data


def schedule_zone(spec: JobSpec | None) -> str:
    if spec is None or not isinstance(spec.schedule, Cron):
        return ""
    return spec.timezone or zone_name()


# -- pages -------------------------------------------------------------------------------------


def overview(src: Source, now: float, query: str = "", sort: str = "file", desc: bool = False,
             html: bool = False) -> dict:
    """Every job: schedule, next run, last result, rate and median, its last runs, what runs.
    `html`: each job's strip as SVG ("strip_svg") instead of a list ("strip")."""
    runlog = src.open()
    try:
        specs, errors = src.specs(runlog)
        state = runlog.daemon() if runlog else None
        pid = src.daemon_pid(state, now)
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
        finished: dict[str, Run] = {}
        if runlog is not None:
            for run in runlog.running():
                active.setdefault(run.job, []).append(run)
            for name in sorted(set(active) - set(names)):  # runs of a job a reload removed
                rows.append(JobRow(name=name, schedule="-", command="", next_run=None, enabled=False,
                                   line=0, description="removed from the jobs file; this run goes on until it ends"))
                names.append(name)
            paused = runlog.paused()
            recent = runlog.recent_marks_many(names, STRIP_RUNS)
            settled = {n for n in names if n not in active}
            todo = [n for n in names if src.kept("stats", n, recent[n]) is None]
            fresh = runlog.stats_many(todo, STATS_RUNS) if todo else {}
            for n in todo:
                src.keep("stats", n, recent[n], fresh[n], n in settled)
            stats = {n: fresh[n] if n in fresh else src.kept("stats", n, recent[n]) for n in names}
            # LAST is the newest run that ran to an end, as in `status`.
            todo = [n for n in names if src.kept("last", n, recent[n]) is None]
            got = runlog.last_finished(todo, _NOT_AN_END, within=50) if todo else {}
            for n in todo:
                src.keep("last", n, recent[n], (got.get(n),), n in settled)
            finished = {n: got.get(n) if n in got else (src.kept("last", n, recent[n]) or (None,))[0]
                        for n in names}
        stamps = Stamps()
        jobs = []
        for row in rows:
            last = finished.get(row.name)
            rate, median = stats.get(row.name, (None, None))
            spec = by_spec.get(row.name)
            found = recent.get(row.name, [])
            kind = "svg" if html else "json"
            strip = src.kept(kind, row.name, found)
            if strip is None:
                strip = strip_svg(found, now, stamps, STRIP_RUNS) if html else marks(found, now, stamps)
                src.keep(kind, row.name, found, strip, row.name not in active)
            jobs.append({
                "name": row.name, "url": job_url(row.name), "description": row.description,
                "schedule": row.schedule, "zone": schedule_zone(spec), "command": row.command,
                "enabled": row.enabled, "paused": row.name in paused,
                "next_run": iso(row.next_run), "shown_next": shown(row.next_run) if row.next_run else
                ("never" if isinstance(spec and spec.schedule, Cron) else _no_time(spec)),
                "last": brief(last, now) if last else None,
                "success_rate": None if rate is None else round(rate, 3),
                "median_duration_s": None if median is None else round(median, 3),
                "shown_median": duration(median),
                **({"strip_svg": strip} if html else {"strip": strip}),
                "running": [brief(r, now) for r in active.get(row.name, [])],
            })
        total = len(jobs)
        if query:
            needle = query.lower()
            jobs = [j for j in jobs if needle in j["name"].lower()]
        jobs = _sorted(jobs, sort, desc)
        return {
            "daemon": {"running": pid is not None, "pid": pid,
                       "started_at": iso(state.started_at) if state and pid else None,
                       "last_seen": iso(state.last_seen) if state else None,
                       "config_error": state.config_error if state and pid else None},
            "run_log": src.db, "run_log_exists": runlog is not None, "jobs_file": src.jobs,
            "config_errors": errors, "query": query, "sort": sort, "desc": desc,
            "stats_over_runs": STATS_RUNS, "strip_runs": STRIP_RUNS, "jobs_total": total,
            "running": [r for j in jobs for r in j["running"]],
            "jobs": jobs, "zone": zone_name(), "now": iso(now),
        }
    finally:
        if runlog is not None:
            runlog.close()


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
        state = runlog.daemon() if runlog else None
        rows = {row.name: row for row in runlog.jobs()} if runlog and src.daemon_pid(state, now) else {}
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
    """The run's notifications and their delivery attempts, for the run page's
    `notifications` block. The alerts work adds these to the store; until it is wired here,
    none are known. Each item: {"receiver", "event", "at", "ok", "detail"}."""
    return []


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


def check_readable(src: Source) -> str | None:
    """Why the view cannot read the run log, or None (a missing one is fine: shown as such)."""
    try:
        runlog = src.open()
    except RunLogError as e:
        return e.message
    if runlog is not None:
        runlog.close()
    return None

