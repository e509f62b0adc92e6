"""Time a metrics scrape on a large run log: 1,000 jobs x 1,000 runs by default.

    .venv/bin/python bench/bench_metrics.py [--jobs 1000] [--runs-per-job 1000] [--db PATH]
                                            [--daemon-seconds 20]

Builds the log with bench_runlog.build (counters seeded as the migration does), then times:
the store reads of a scrape, the text it becomes, a whole GET /metrics from the daemon's
listener over loopback, prometheus_client's generate_latest of the same collector (what
`metrics --textfile` writes), a `cronsup metrics` process; then a real daemon on that log
with an `@every 1s` job, its start lag idle and with a scrape loop running. Prints figures.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)

from bench_runlog import build, ms, timed  # noqa: E402
from prometheus_client.exposition import generate_latest  # noqa: E402

from cronsup import metrics  # noqa: E402
from cronsup.metrics_server import LoopProbe, MetricsServer  # noqa: E402
from cronsup.store import SqliteStore  # noqa: E402


def scrape_lag(db: str, jobs: int, seconds: float) -> None:
    """Start lag (started_at - scheduled_for) of an @every 1s job, idle and while scraping."""
    tmp = tempfile.mkdtemp(prefix="bench-metrics-daemon-")
    jobs_file = os.path.join(tmp, "jobs")
    with open(jobs_file, "w") as f:
        f.write("[job.tick]\n@every 1s true\n")
        f.writelines(f"[job.job-{j:04d}]\n@daily true\n" for j in range(jobs - 1))
    port = 19000 + os.getpid() % 1000
    log = open(os.path.join(tmp, "daemon.log"), "w")
    proc = subprocess.Popen([sys.executable, "-m", "cronsup", "daemon", "--jobs", jobs_file, "--db", db,
                             "--metrics", str(port)], stdout=log, stderr=subprocess.STDOUT,
                            cwd=os.path.join(HERE, ".."))
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(url, timeout=10).read()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    log.flush()
                    raise SystemExit(f"the daemon did not serve {url}:\n" + open(log.name).read()[-2000:])
                time.sleep(0.2)

        def lags(since: float, until: float) -> list[float]:
            with SqliteStore.open(db, readonly=True) as r:
                return [(x.started_at - x.scheduled_for) * 1000 for x in r.runs("tick", limit=200)
                        if since < x.scheduled_for < until and x.started_at]

        t0 = time.time()
        time.sleep(seconds)
        idle = lags(t0, time.time())
        stop, scrapes = threading.Event(), []

        def loop():
            while not stop.is_set():
                t = time.perf_counter()
                urllib.request.urlopen(url, timeout=30).read()
                scrapes.append(time.perf_counter() - t)

        thread = threading.Thread(target=loop)
        t1 = time.time()
        thread.start()
        time.sleep(seconds)
        stop.set()
        thread.join()
        busy = lags(t1, time.time())
        for label, found in (("idle", idle), ("scraping", busy)):
            found.sort()
            print(f"daemon start lag, {label:8s} n={len(found):3d}  median {statistics.median(found):6.1f} ms"
                  f"  p90 {found[int(len(found) * 0.9)]:6.1f} ms  max {max(found):6.1f} ms")
        print(f"  {len(scrapes)} scrapes back to back, median {ms(statistics.median(scrapes))}"
              f"  max {ms(max(scrapes))} (each waits out the loop's next wake-up)")
    finally:
        proc.terminate()
        proc.wait(60)
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--runs-per-job", type=int, default=1000)
    parser.add_argument("--db", help="build here (default: a temporary directory, removed after)")
    parser.add_argument("--daemon-seconds", type=float, default=20.0,
                        help="seconds of each of the daemon's idle and scraping phases (0: skip)")
    args = parser.parse_args()
    tmp = None
    if args.db:
        path = args.db
    else:
        tmp = tempfile.mkdtemp(prefix="bench-metrics-")
        path = os.path.join(tmp, "runs.db")
    try:
        if not os.path.exists(path):
            secs = build(path, args.jobs, args.runs_per_job)
            print(f"build: {args.jobs * args.runs_per_job:,} runs for {args.jobs:,} jobs in {secs:.1f} s")
        reader = SqliteStore.open(path, readonly=True)
        best, med, scrape = timed(lambda: metrics.read(reader), repeat=10)
        samples = sum(len(f.samples) for f in metrics.families(scrape))
        print(f"read (store snapshot)   best {ms(best)}  median {ms(med)}  ({samples:,} samples)")
        best, med, body = timed(lambda: metrics.exposition(scrape), repeat=10)
        print(f"exposition (text)       best {ms(best)}  median {ms(med)}  ({len(body) / 2**20:.1f} MiB)")
        collector = metrics.StoreCollector(lambda: reader)
        best, med, _ = timed(lambda: generate_latest(metrics.registry(collector)), repeat=5)
        print(f"generate_latest (lib)   best {ms(best)}  median {ms(med)}  (the --textfile path)")

        probe = LoopProbe()
        server = MetricsServer("127.0.0.1", 0, path, probe)  # no loop: no wake-up to wait out
        server.start()
        url = f"http://127.0.0.1:{server.port}/metrics"
        best, med, _ = timed(lambda: urllib.request.urlopen(url, timeout=30).read(), repeat=20)
        print(f"GET /metrics (HTTP)     best {ms(best)}  median {ms(med)}  (1,000 jobs, "
              f"{args.jobs * args.runs_per_job:,} runs)")
        server.close()
        probe.close()
        reader.close()

        walls = []
        for _ in range(5):
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "cronsup", "metrics", "--db", path], check=True,
                           stdout=subprocess.DEVNULL, cwd=os.path.join(HERE, ".."))
            walls.append(time.perf_counter() - t)
        print(f"cronsup metrics process best {ms(min(walls))}  median {ms(statistics.median(walls))}")
        if args.daemon_seconds > 0:
            private = tempfile.mkdtemp(prefix="bench-metrics-db-")  # 0700, as the daemon wants
            copy = os.path.join(private, "runs.db")
            shutil.copyfile(path, copy)
            try:
                scrape_lag(copy, args.jobs, args.daemon_seconds)
            finally:
                shutil.rmtree(private, ignore_errors=True)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
