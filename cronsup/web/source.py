"""Where the web view reads (Source: the run log, the jobs file, what it keeps between requests) and how it shows values.

Everything here reads: the run store is opened read-only for one request.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from markupsafe import escape

from cronsup import paths, report, units
from cronsup.model import Cron, JobSpec, RunStatus
from cronsup.runjson import iso, run_json
from cronsup.store import (
    FAILED_STATUSES,
    DaemonState,
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
OUTPUT_PART = 16 * 1024  # output bytes a run page carries: a screenful and more, for a quick first paint
OUTPUT_MORE = 256 * 1024  # what "load more" and the live view ask for at once (at most OUTPUT_MAX)
OUTPUT_MAX = 1024 * 1024
KEEP_MARKS = 300.0  # seconds a settled job's last runs are reused without reading them again
_NOT_AN_END = (RunStatus.RUNNING, RunStatus.SKIPPED, RunStatus.MISSED)


class NotFound(Exception):
    """No such job or run: a 404 with this message."""


class BadRequest(Exception):
    """A query parameter that makes no sense: a 400 with this message."""


@dataclass
class Daemon:
    """The daemon as the view shows it: its state row and pid (None: not running); on a
    PostgreSQL run log the node shown and the nodes whose heartbeat is fresh."""

    state: DaemonState | None
    pid: int | None
    node: str | None = None
    nodes_up: list[str] = field(default_factory=list)


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
        self._marks: dict[str, tuple[int | None, list[RunMark], float]] = {}
        # Each ended run's strip cell (SVG, and JSON item) as drawn once: a job whose strip
        # moved by a run gets one new cell, not thirty.
        self._cells: dict[RunMark, tuple[str, str]] = {}
        self._items: dict[RunMark, dict] = {}
        self._instants: dict[float, tuple[str | None, str]] = {}

    def next_run(self, spec: JobSpec, now: float) -> float | None:
        """A stopped daemon's job's next fire from its spec, kept until it has passed."""
        entry = self._next.get(spec.name)
        if entry is None or (entry[0] is not spec and entry[0] != spec) or (entry[1] is not None and entry[1] <= now) or entry[2] > now:
            entry = self._next[spec.name] = (spec, report.next_run(spec, now), now)
        return entry[1]

    def recent(self, runlog: RunReader, names: list[str], active: set[str], now: float) -> dict[str, list[RunMark]]:
        """Each job's last STRIP_RUNS runs. A job with no run going whose newest run id is the
        one seen last time has the same last runs (ended runs never change): those are not
        read again for KEEP_MARKS seconds (pruning by age can still remove old ones), so a
        reload of 1,000 settled jobs reads one id per job; one with newer runs has only those
        read (when each of 1,000 jobs ran once: 1,000 rows, not 30,000)."""
        newest = runlog.newest_ids(names)
        todo, since = [], {}
        read_at: dict[str, float] = {}  # when a job's runs were last read whole
        found: dict[str, list[RunMark]] = {}
        for name in names:
            kept = self._marks.get(name)
            if name in active or kept is None or kept[2] <= now - KEEP_MARKS or kept[0] is None:
                todo.append(name)
            elif kept[0] == newest.get(name):
                found[name] = kept[1]
            elif newest.get(name, 0) > kept[0]:
                since[name] = kept[0]
                read_at[name] = kept[2]
            else:
                todo.append(name)
        fresh = runlog.recent_marks_many(todo, STRIP_RUNS) if todo else {}
        if since:
            for name, newer in runlog.recent_marks_many(list(since), STRIP_RUNS, after=since).items():
                fresh[name] = (newer + self._marks[name][1])[:STRIP_RUNS]
                todo.append(name)
        for name in todo:
            marks = found[name] = fresh[name]
            if name in active or any(m.status == "running" for m in marks):
                self._marks.pop(name, None)
            else:
                self._marks[name] = (newest.get(name), marks, read_at.get(name, now))
        return found

    def instant(self, t: float) -> tuple[str | None, str]:
        """An instant as iso() and shown() give it, kept (the overview shows each job's next
        run on every look)."""
        found = self._instants.get(t)
        if found is None:
            if len(self._instants) > 100_000:
                self._instants.clear()
            found = self._instants[t] = (iso(t), shown(t))
        return found

    def strip_cells(self) -> tuple[dict[RunMark, tuple[str, str]], dict[RunMark, dict]]:
        """Where strip_svg and marks keep their cells."""
        return self._cells, self._items

    def trim_cells(self, recent: dict[str, list[RunMark]]) -> None:
        """Forget the cells of runs no strip shows any more, once they are most of them."""
        shown = sum(len(found) for found in recent.values())
        for attr in ("_cells", "_items"):
            cells = getattr(self, attr)
            if len(cells) > 2 * shown + 1000:
                setattr(self, attr, {m: cells[m] for found in recent.values() for m in found if m in cells})

    def kept(self, kind: str, job: str, found: list[RunMark]) -> Any:
        """What was kept for `found` (the job's last runs as now read), or None."""
        entry = self._kept.get((kind, job))
        return entry[1] if entry is not None and (entry[0] is found or entry[0] == found) else None

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

    def daemon(self, runlog: RunReader | None, now: float) -> Daemon:
        """Who runs the jobs. On a postgresql:// run log no lock file says it: the nodes'
        heartbeats (aged by the database's clock) do. The state shown is this host's node
        when it is up, else the first up node's by name, else the last one seen; `runlog`
        then reads that node's jobs (their next runs and retries)."""
        if runlog is None or not paths.is_url(self.db):
            state = runlog.daemon() if runlog else None
            return Daemon(state, self.daemon_pid(state, now))
        from cronsup.cli_nodes import LIVE_FOR
        from cronsup.cluster import live

        nodes = runlog.nodes()
        up = live(nodes, LIVE_FOR)
        here = runlog.node
        if here in up:
            chosen = here
        elif up:
            chosen = min(up)  # by name: the same node on each reload
        elif any(n["node"] == here for n in nodes) or not nodes:
            chosen = here
        else:
            chosen = max(nodes, key=lambda n: n["db_seen"] or 0)["node"]
        runlog.node = chosen  # a read-only store: `node` only says whose rows it reads
        state = runlog.daemon()
        return Daemon(state, up[chosen]["pid"] if chosen in up else None,
                      node=chosen if state is not None else None, nodes_up=sorted(up))

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

def mark_took(m: RunMark, now: float) -> float | None:
    if m.started_at is None:
        return None
    if m.finished_at is None:
        return round(now - m.started_at, 3) if m.status == "running" else None
    return round(m.finished_at - m.started_at, 3)

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


def schedule_zone(spec: JobSpec | None, system: str | None = None) -> str:
    """The zone a cron job's times are in; `system`: zone_name(), when the caller has it."""
    if spec is None or not isinstance(spec.schedule, Cron):
        return ""
    return spec.timezone or system or zone_name()


# -- pages -------------------------------------------------------------------------------------

def check_readable(src: Source) -> str | None:
    """Why the view cannot read the run log, or None (a missing one is fine: shown as such)."""
    try:
        runlog = src.open()
    except RunLogError as e:
        return e.message
    if runlog is not None:
        runlog.close()
    return None
