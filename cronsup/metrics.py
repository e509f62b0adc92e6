"""The Prometheus series of SPEC section 5: a collector that reads the run store at scrape time.

Every scrape is one read snapshot of a constant number of queries, whatever the number of
jobs. Counters and the duration histogram come from the store's counters, which pruning
never touches, so they never go down across restarts, reloads or pruning.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest

from cronsup.model import RunStatus
from cronsup.store import DURATION_BUCKETS, NOTIFICATIONS_FAILED_COUNTER, RunReader
from cronsup.store.records import (
    DURATION_BUCKET_COUNTER,
    DURATION_SUM_COUNTER,
    RUNS_COUNTER,
    bucket_label,
)

# Every finished status is shown for every job, 0 included: increase() and rate() then see
# a job's first failure, which a series that appears with the value 1 would hide.
FINISHED_STATUSES = tuple(s for s in RunStatus if s is not RunStatus.RUNNING)


class StoreCollector:
    """A prometheus_client collector over a run store reader; safe to call from several
    threads (the reader is used by one at a time)."""

    def __init__(self, open_reader: Callable[[], RunReader]):
        self._open_reader = open_reader  # opened on the first scrape, reopened after an error
        self._reader: RunReader | None = None
        self._lock = threading.Lock()

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            if self._reader is None:
                self._reader = self._open_reader()
            try:
                return iter(_families(self._reader))
            except Exception:
                self._drop()
                raise

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


def text(reader: RunReader) -> bytes:
    """The series in Prometheus' text format, read from `reader` now."""
    return generate_latest(registry(StoreCollector(lambda: reader)))


def _families(reader: RunReader) -> list[Metric]:
    with reader.snapshot():
        daemon = reader.daemon()
        jobs = reader.jobs()
        paused = reader.paused()
        counters = reader.counters()
        names = [job.name for job in jobs]
        summaries = reader.job_summaries(names)

    def gauge(name: str, doc: str, unit: str = "") -> GaugeMetricFamily:
        return GaugeMetricFamily(name, doc, labels=["job"], unit=unit)

    last_run = gauge("cronsup_job_last_run_timestamp_seconds", "When the job's latest run started.")
    last_success = gauge("cronsup_job_last_success_timestamp_seconds",
                         "When the job's latest successful run finished.")
    exit_code = gauge("cronsup_job_last_exit_code",
                      "Exit code of the job's latest run that ran (128+N when killed by signal N).")
    duration = gauge("cronsup_job_last_duration_seconds", "How long the job's latest run that ran took.")
    next_run = gauge("cronsup_job_next_run_timestamp_seconds",
                     "When the job runs next (a pending retry if that is sooner).")
    running = gauge("cronsup_job_running", "Runs of the job running now.")
    is_paused = gauge("cronsup_job_paused", "1 if the job is paused (cronsup pause), else 0.")

    runs: dict[tuple[str, str], float] = {}
    buckets: dict[str, dict[str, float]] = {}
    sums: dict[str, float] = {}
    failed_notifications: list[tuple[dict[str, str], float]] = []
    for counter in counters:
        labels = dict(counter.labels)
        if counter.name == RUNS_COUNTER:
            runs[labels.get("job", ""), labels.get("status", "")] = counter.value
        elif counter.name == DURATION_BUCKET_COUNTER:
            buckets.setdefault(labels.get("job", ""), {})[labels.get("le", "")] = counter.value
        elif counter.name == DURATION_SUM_COUNTER:
            sums[labels.get("job", "")] = counter.value
        elif counter.name == NOTIFICATIONS_FAILED_COUNTER:
            failed_notifications.append((labels, counter.value))

    runs_total = CounterMetricFamily("cronsup_job_runs", "Finished runs of the job, by status.",
                                     labels=["job", "status"])
    histogram = HistogramMetricFamily("cronsup_job_duration_seconds",
                                      "How long the job's runs that ran took.", labels=["job"])
    bounds = [bucket_label(b) for b in DURATION_BUCKETS]
    for job in jobs:
        name = job.name
        summary = summaries.get(name)
        if summary is not None:
            if summary.last_started is not None:
                last_run.add_metric([name], summary.last_started)
            if summary.last_success is not None:
                last_success.add_metric([name], summary.last_success)
            if summary.last_status is not None:
                code = summary.last_exit_code
                if code is None and summary.last_signal:
                    code = 128 + summary.last_signal  # as a shell reports a killed command
                if code is not None:
                    exit_code.add_metric([name], code)
                if summary.last_duration is not None:
                    duration.add_metric([name], max(summary.last_duration, 0.0))
            running.add_metric([name], summary.running)
        upcoming = [t for t in (job.next_run, job.retry_at) if t is not None]
        if upcoming:
            next_run.add_metric([name], min(upcoming))
        is_paused.add_metric([name], 1 if name in paused else 0)
        for status in FINISHED_STATUSES:
            runs_total.add_metric([name, str(status)], runs.get((name, str(status)), 0.0))
        stored = buckets.get(name, {})
        cumulative, points = 0.0, []
        for le in bounds:
            cumulative += stored.get(le, 0.0)
            points.append((le, cumulative))
        points.append(("+Inf", cumulative + stored.get("+Inf", 0.0)))
        histogram.add_metric([name], points, sums.get(name, 0.0))

    keys = sorted({k for labels, _ in failed_notifications for k in labels})
    notifications = CounterMetricFamily("cronsup_notifications_failed",
                                        "Notifications given up on after their retries, by channel.",
                                        labels=keys)
    if not keys:
        notifications.add_metric([], 0.0)
    for labels, value in failed_notifications:
        notifications.add_metric([labels.get(k, "") for k in keys], value)

    config_error = GaugeMetricFamily(
        "cronsup_config_error", "1 if the daemon's last load of the jobs file failed (it runs the "
        "last good version), else 0.",
        value=1 if daemon is not None and daemon.config_error else 0)
    started = GaugeMetricFamily("cronsup_daemon_start_time_seconds", "When the daemon started.")
    if daemon is not None:
        started.add_metric([], daemon.started_at)
    return [last_run, last_success, exit_code, duration, next_run, running, is_paused, runs_total,
            histogram, notifications, config_error, started]
