"""The Prometheus series of SPEC section 5, read from the run store at scrape time.

Every scrape is one read snapshot of a constant number of queries, whatever the number of
jobs. Counters and the duration histogram come from the store's counters, which pruning
never touches, so they never go down across restarts, reloads or pruning. `read` takes the
snapshot; `exposition` writes it in the text format (fast: a thousand jobs are 32,000
samples; /metrics and `cronsup metrics`), and `families` gives the same samples to
prometheus_client through `StoreCollector` (`metrics --textfile`, write_to_textfile).
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.exposition import generate_latest

from cronsup.model import RunStatus
from cronsup.store import (
    DURATION_BUCKETS,
    NOTIFICATIONS_FAILED_COUNTER,
    DaemonState,
    JobRow,
    JobSummary,
    RunReader,
)
from cronsup.store.records import (
    DURATION_BUCKET_COUNTER,
    DURATION_SUM_COUNTER,
    RUNS_COUNTER,
    bucket_label,
)

# Every finished status is shown for every job, 0 included: increase() and rate() then see
# a job's first failure, which a series that appears with the value 1 would hide.
FINISHED_STATUSES = tuple(s for s in RunStatus if s is not RunStatus.RUNNING)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Labels = tuple[tuple[str, str], ...]


@dataclass
class Family:
    """One metric: `name` without _total for a counter; samples (name, job, labels, value):
    the label job (None: none) then the others, tuples shared between samples."""

    name: str
    kind: str  # gauge, counter, histogram
    doc: str
    samples: list[tuple[str, str | None, Labels, float]] = field(default_factory=list)


class StoreCollector:
    """A prometheus_client collector over a run store reader; safe to call from several
    threads (the reader is used by one at a time)."""

    def __init__(self, open_reader: Callable[[], RunReader]):
        self._open_reader = open_reader  # opened on the first scrape, reopened after an error
        self._reader: RunReader | None = None
        self._lock = threading.Lock()

    def read(self) -> Scrape:
        with self._lock:
            if self._reader is None:
                self._reader = self._open_reader()
            try:
                return read(self._reader)
            except Exception:
                self._drop()
                raise

    def collect(self) -> Iterator[Metric]:
        for family in families(self.read()):
            metric = Metric(family.name, family.doc, family.kind)
            for name, job, labels, value in family.samples:
                metric.add_sample(name, {"job": job, **dict(labels)} if job is not None else dict(labels),
                                  value)
            yield metric

    def _drop(self) -> None:
        reader, self._reader = self._reader, None
        close = getattr(reader, "close", None)
        if close is not None:
            try:
                close()
            except Exception:  # noqa: BLE001 - already failing; the next scrape reopens
                pass

    def close(self) -> None:
        with self._lock:
            self._drop()


def registry(collector: StoreCollector) -> CollectorRegistry:
    """A registry with only cronsup's series (no process or Python ones)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(collector)
    return reg


def text(reader: RunReader) -> str:
    """The series in Prometheus' text format, read from `reader` now (through prometheus_client)."""
    return generate_latest(registry(StoreCollector(lambda: reader))).decode()


def _format(families: list[Family]) -> str:
    """The text format of `families`, as generate_latest writes it."""
    jobs: dict[str, str] = {}  # job -> 'job="..."', escaped once
    others: dict[int, str] = {}  # id of a shared labels tuple -> its text
    keep = []  # the tuples whose ids are keys above, alive until the end

    lines: list[str] = []
    append = lines.append
    for family in families:
        shown = family.name + "_total" if family.kind == "counter" else family.name
        lines.append(f"# HELP {shown} {_escape(family.doc, quote=False)}\n# TYPE {shown} {family.kind}")
        for name, job, labels, value in family.samples:
            text = others.get(id(labels))
            if text is None:
                keep.append(labels)
                text = others[id(labels)] = "".join(f',{k}="{_escape(v)}"' for k, v in labels)
            if job is not None:
                shown_job = jobs.get(job)
                if shown_job is None:
                    shown_job = jobs[job] = f'job="{_escape(job)}"'
                append(f"{name}{{{shown_job}{text}}} "
                       f"{repr(value) if type(value) is float and value - value == 0.0 else _number(value)}")
            elif text:
                append(f"{name}{{{text[1:]}}} {_number(value)}")
            else:
                append(f"{name} {_number(value)}")
    lines.append("")
    return "\n".join(lines)


def _escape(value: str, quote: bool = True) -> str:
    value = value.replace("\\", "\\\\").replace("\n", "\\n")
    return value.replace('"', '\\"') if quote else value


def _number(value: float) -> str:
    if value == math.inf:
        return "+Inf"
    if value == -math.inf:
        return "-Inf"
    if value != value:
        return "NaN"
    return repr(float(value))


@dataclass
class Scrape:
    """What one scrape read of the store, counters sorted out by series."""

    daemon: DaemonState | None
    jobs: list[JobRow]
    paused: dict[str, float]
    summaries: dict[str, JobSummary]
    runs: dict[tuple[str, str], float]  # (job, status)
    buckets: dict[str, dict[str, float]]  # job -> le -> runs in that bucket (not cumulative)
    sums: dict[str, float]
    notifications: list[tuple[Labels, float]]


def read(reader: RunReader) -> Scrape:
    """One snapshot of the store: a constant number of queries, whatever the number of jobs."""
    with reader.snapshot():
        daemon = reader.daemon()
        jobs = reader.jobs()
        paused = reader.paused()
        counters = reader.counters()
        summaries = reader.job_summaries([job.name for job in jobs])

    runs: dict[tuple[str, str], float] = {}
    buckets: dict[str, dict[str, float]] = {}
    sums: dict[str, float] = {}
    failed_notifications: list[tuple[Labels, float]] = []
    for name, labels, value in counters:
        if name == RUNS_COUNTER or name == DURATION_BUCKET_COUNTER:
            # (("job", ...), ("le" or "status", ...)): sorted by label name
            if len(labels) == 2 and labels[0][0] == "job":
                if name == RUNS_COUNTER:
                    runs[labels[0][1], labels[1][1]] = value
                else:
                    buckets.setdefault(labels[0][1], {})[labels[1][1]] = value
        elif name == DURATION_SUM_COUNTER:
            sums[dict(labels).get("job", "")] = value
        elif name == NOTIFICATIONS_FAILED_COUNTER:
            failed_notifications.append((labels, value))

    return Scrape(daemon, jobs, paused, summaries, runs, buckets, sums, failed_notifications)


def families(scrape: Scrape) -> list[Family]:
    """The series as prometheus_client-shaped families (StoreCollector.collect)."""
    jobs, paused, summaries = scrape.jobs, scrape.paused, scrape.summaries
    runs, buckets, sums = scrape.runs, scrape.buckets, scrape.sums
    last_run = Family("cronsup_job_last_run_timestamp_seconds", "gauge", "When the job's latest run started.")
    last_success = Family("cronsup_job_last_success_timestamp_seconds", "gauge",
                          "When the job's latest successful run finished.")
    exit_code = Family("cronsup_job_last_exit_code", "gauge",
                       "Exit code of the job's latest run that ran (128+N when killed by signal N).")
    duration = Family("cronsup_job_last_duration_seconds", "gauge", "How long the job's latest run that ran took.")
    next_run = Family("cronsup_job_next_run_timestamp_seconds", "gauge",
                      "When the job runs next (a pending retry if that is sooner).")
    running = Family("cronsup_job_running", "gauge", "Runs of the job running now.")
    is_paused = Family("cronsup_job_paused", "gauge", "1 if the job is paused (cronsup pause), else 0.")
    runs_total = Family("cronsup_job_runs", "counter", "Finished runs of the job, by status.")
    histogram = Family("cronsup_job_duration_seconds", "histogram", "How long the job's runs that ran took.")

    bounds = [bucket_label(b) for b in DURATION_BUCKETS] + ["+Inf"]
    by_status = [(str(s), (("status", str(s)),)) for s in FINISHED_STATUSES]
    by_bucket = [(le, (("le", le),)) for le in bounds]
    runs_name, bucket_name = "cronsup_job_runs_total", "cronsup_job_duration_seconds_bucket"
    runs_add, histogram_add = runs_total.samples.append, histogram.samples.append
    for job in jobs:
        name = job.name
        summary = summaries.get(name)
        if summary is not None:
            if summary.last_started is not None:
                last_run.samples.append((last_run.name, name, (), summary.last_started))
            if summary.last_success is not None:
                last_success.samples.append((last_success.name, name, (), summary.last_success))
            if summary.last_status is not None:
                code = summary.last_exit_code
                if code is None and summary.last_signal:
                    code = 128 + summary.last_signal  # as a shell reports a killed command
                if code is not None:
                    exit_code.samples.append((exit_code.name, name, (), float(code)))
                if summary.last_duration is not None:
                    duration.samples.append((duration.name, name, (), max(summary.last_duration, 0.0)))
            running.samples.append((running.name, name, (), float(summary.running)))
        upcoming = [t for t in (job.next_run, job.retry_at) if t is not None]
        if upcoming:
            next_run.samples.append((next_run.name, name, (), min(upcoming)))
        is_paused.samples.append((is_paused.name, name, (), 1.0 if name in paused else 0.0))
        for status, labels in by_status:
            runs_add((runs_name, name, labels, runs.get((name, status), 0.0)))
        stored = buckets.get(name, {})
        cumulative = 0.0
        for le, labels in by_bucket:
            cumulative += stored.get(le, 0.0)
            histogram_add((bucket_name, name, labels, cumulative))
        histogram_add(("cronsup_job_duration_seconds_count", name, (), cumulative))
        histogram_add(("cronsup_job_duration_seconds_sum", name, (), sums.get(name, 0.0)))

    return [last_run, last_success, exit_code, duration, next_run, running, is_paused, runs_total,
            histogram, *_daemon_families(scrape)]


def _daemon_families(scrape: Scrape) -> list[Family]:
    daemon, failed_notifications = scrape.daemon, scrape.notifications
    notifications = Family("cronsup_notifications_failed", "counter",
                           "Notifications whose delivery failed, by channel.")
    keys = sorted({k for labels, _ in failed_notifications for k, _ in labels})
    if not failed_notifications:
        notifications.samples.append(("cronsup_notifications_failed_total", None, (), 0.0))
    for labels, value in failed_notifications:
        have = dict(labels)
        notifications.samples.append(("cronsup_notifications_failed_total", None,
                                      tuple((k, have.get(k, "")) for k in keys), value))

    config_error = Family("cronsup_config_error", "gauge", "1 if the daemon's last load of the jobs file "
                          "failed (it runs the last good version), else 0.")
    config_error.samples.append((config_error.name, None, (), 1 if daemon is not None and daemon.config_error else 0))
    started = Family("cronsup_daemon_start_time_seconds", "gauge", "When the daemon started.")
    if daemon is not None:
        started.samples.append((started.name, None, (), daemon.started_at))
    return [notifications, config_error, started]


_BOUNDS = [bucket_label(b) for b in DURATION_BUCKETS] + ["+Inf"]
# One str.format per job for its 8 statuses, and one for its 17 histogram lines: a scrape of a
# thousand jobs writes 32,000 lines, and a format call a line was half of its time.
_RUNS_LINES = "".join("cronsup_job_runs_total{0}" + f',status="{s}"' + "}} {" + f"{i + 1}!r}}\n"
                      for i, s in enumerate(FINISHED_STATUSES))
_HISTOGRAM_LINES = "".join(
    "cronsup_job_duration_seconds_bucket{0}" + f',le="{le}"' + "}} {" + f"{i + 1}!r}}\n"
    for i, le in enumerate(_BOUNDS)
) + (f"cronsup_job_duration_seconds_count{{0}}}}}} {{{len(_BOUNDS) + 1}!r}}\n"
     f"cronsup_job_duration_seconds_sum{{0}}}}}} {{{len(_BOUNDS) + 2}!r}}\n")
_NO_SUMMARY = JobSummary()


def exposition(scrape: Scrape) -> bytes:
    """The text format (0.0.4) of the series, the samples `families` gives and prometheus_client
    would write, at a tenth of generate_latest's cost (what /metrics and `cronsup metrics` print)."""
    docs = {f.name: f for f in _empty_families()}
    rows = []
    for job in scrape.jobs:
        summary = scrape.summaries.get(job.name, _NO_SUMMARY)
        code = summary.last_exit_code
        if code is None and summary.last_signal:
            code = 128 + summary.last_signal
        ran = summary.last_status is not None
        upcoming = [t for t in (job.next_run, job.retry_at) if t is not None]
        rows.append((
            '{job="' + _escape(job.name) + '"', job.name, summary.last_started, summary.last_success,
            float(code) if ran and code is not None else None,
            max(summary.last_duration, 0.0) if ran and summary.last_duration is not None else None,
            min(upcoming) if upcoming else None, float(summary.running),
            1.0 if job.name in scrape.paused else 0.0,
        ))
    out: list[str] = []
    for column, name in enumerate(("cronsup_job_last_run_timestamp_seconds",
                                   "cronsup_job_last_success_timestamp_seconds", "cronsup_job_last_exit_code",
                                   "cronsup_job_last_duration_seconds", "cronsup_job_next_run_timestamp_seconds",
                                   "cronsup_job_running", "cronsup_job_paused"), start=2):
        out.append(_head(docs[name]))
        out.extend([f"{name}{row[0]}}} {row[column]!r}\n" for row in rows if row[column] is not None])
    out.append(_head(docs["cronsup_job_runs"]))
    runs, statuses = scrape.runs, [str(s) for s in FINISHED_STATUSES]
    out.extend([_RUNS_LINES.format(row[0], *[runs.get((row[1], s), 0.0) for s in statuses]) for row in rows])
    out.append(_head(docs["cronsup_job_duration_seconds"]))
    for row in rows:
        stored = scrape.buckets.get(row[1], {})
        cumulative = list(itertools.accumulate([stored.get(le, 0.0) for le in _BOUNDS], initial=0.0))[1:]
        out.append(_HISTOGRAM_LINES.format(row[0], *cumulative, cumulative[-1], scrape.sums.get(row[1], 0.0)))
    out.append(_format(_daemon_families(scrape)))
    return "".join(out).encode()


def _head(family: Family) -> str:
    shown = family.name + "_total" if family.kind == "counter" else family.name
    return f"# HELP {shown} {_escape(family.doc, quote=False)}\n# TYPE {shown} {family.kind}\n"


def _empty_families() -> list[Family]:
    return families(Scrape(None, [], {}, {}, {}, {}, {}, []))
