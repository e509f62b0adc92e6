"""Time the web view: the overview of 1,000 jobs, a job page on 1,000,000 runs, a run page with 1 MiB of output.

    .venv/bin/python bench/bench_web.py [--jobs 1000] [--runs-per-job 100] [--big-job-runs 1000000]
                                        [--dir DIR] [--no-browser] [--paint-only]

Builds two run logs with bench_runlog.build (1,000 jobs; one job with a million runs) and a
jobs file for each, starts `cronsup web` (a real uvicorn) on each, and reads the server time
of each page from its Server-Timing header (the app's time from request to response start),
median of 20 requests after 3 warm-ups, and the very first request's (server and client
time; the client's includes the server's start if it was not yet serving). Then the overview
right after every job got a new run, on a copy of the 1,000 jobs' log. With Chromium
(Debian's, /usr/bin/chromium), also the first contentful paint of a run page whose output is
1 MiB, on a first visit and for one visitor, and of the graph page (1 KiB) as the browser's
floor. Prints figures; writes nothing else (but DIR, when given, is kept for the next run;
PYTHONPATH=DIR runs another copy of cronsup as the server, to compare).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
try:  # the installed cronsup, or the one PYTHONPATH names (to compare two versions)
    import cronsup  # noqa: F401
except ImportError:
    sys.path.insert(1, os.path.join(HERE, ".."))

from bench_runlog import build  # noqa: E402

from cronsup.model import RunStatus, Trigger  # noqa: E402
from cronsup.store import NewRun, SqliteStore  # noqa: E402

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


def serve(jobs: str, db: str) -> tuple[subprocess.Popen, str, float]:
    """`cronsup web` on a free port: the process, its URL, and the seconds until it printed the
    URL (its start-up, warm-up included, when it has one)."""
    began = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "cronsup", "web", "--listen", "127.0.0.1:0", "--jobs", jobs,
                             "--db", db], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    url = proc.stdout.readline().strip().rstrip("/")
    return proc, url, time.perf_counter() - began


def get(url: str) -> tuple[float, float, float, int]:
    """One request: its Server-Timing wall and CPU (ms), the client's wall (ms), the size."""
    began = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as response:
        body = response.read()
        timing = dict(part.strip().split(";dur=") for part in response.headers["server-timing"].split(","))
    return float(timing["app"]), float(timing["cpu"]), (time.perf_counter() - began) * 1000, len(body)


def server_ms(url: str, n: int = 20) -> tuple[float, float, float, float, int, float, float]:
    """Server time in ms from Server-Timing: wall median, best, worst; CPU median; the size;
    and the first request's server and client wall time (the first request the server
    answers, when `url` is the first one asked of it)."""
    times, cpus, size, first, first_client = [], [], 0, 0.0, 0.0
    for i in range(n + 3):
        app, cpu, client, length = get(url)
        if i == 0:
            first, first_client = app, client
        if i >= 3:
            times.append(app)
            cpus.append(cpu)
            size = length
    return statistics.median(times), min(times), max(times), statistics.median(cpus), size, first, first_client


def moved_ms(url: str, db: str, names: list[str], rounds: int = 3) -> list[float]:
    """The overview right after every job got a new run (as when all of them fire in one
    minute): nothing kept of any job's last runs still holds. Server wall time, ms."""
    found = []
    for r in range(rounds):
        with SqliteStore.open(db) as store:
            at = time.time()
            ids = store.insert_runs([NewRun(name, Trigger.SCHEDULE, 1, at) for name in names], host="h", boot_id="b")
            store.mark_started_many([(run_id, 1, None, at) for run_id in ids])
            for i, run_id in enumerate(ids):
                store.finish_run(run_id, RunStatus.FAILED if (i + r) % 9 == 0 else RunStatus.SUCCESS,
                                 finished_at=at + 0.5 + i % 7, exit_code=0)
        get(url + "/api")  # (not the overview: its time is the next request's)
        found.append(get(url + "/")[0])
        for _ in range(2):
            get(url + "/")
    return found


def load_factor(db: str) -> str:
    """`stats()` of every job, the query bench_runlog.py measured at 28 ms on a quiet machine
    (1,000 jobs x 1,000 runs): how much slower this machine is right now."""
    with SqliteStore.open(db, readonly=True) as log:
        names = [j.name for j in log.jobs()]
        times = []
        for _ in range(5):
            t = time.perf_counter()
            for name in names:
                log.stats(name)
            times.append(time.perf_counter() - t)
    return f"stats() x {len(names)}: {statistics.median(times) * 1000:.0f} ms (28 ms on the quiet machine)"


def in_process(work: str, jobs: str, db: str, rounds: int = 3) -> None:
    """The overview's data and HTML built in this process (no HTTP), on a copy of `db`: with
    nothing kept (a view just started, before any warm-up), again (a reload), once what it
    keeps of each job's last runs has expired, and after every job got a new run."""
    from cronsup.web import app as webapp
    from cronsup.web import data, rows, source

    class Request:  # what the templates read of one
        class url:
            path, query = "/", ""
        query_params: dict = {}

    env = webapp._env()

    def look(src: data.Source, now: float) -> float:
        began = time.perf_counter()
        d = data.overview(src, now, html=True)
        env.get_template("overview.html").render(request=Request, url_with=lambda **k: "/", api="/api/overview",
                                                 zone="UTC", d=d)
        return (time.perf_counter() - began) * 1000

    copy = os.path.join(work, "in-process.db")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(copy + suffix):
            os.remove(copy + suffix)
    shutil.copy(db, copy)
    with SqliteStore.open(copy, readonly=True) as log:
        names = log.job_names()
    found: dict[str, list[float]] = {"nothing kept": [], "reload": [], "kept runs expired": [], "every job moved": []}
    for r in range(rounds):
        getattr(rows, "_ROWS", {}).clear()  # (module-level: a new process has none)
        src = data.Source(db=copy, jobs=jobs)
        now = time.time()
        found["nothing kept"].append(look(src, now))
        found["reload"].append(statistics.median(look(src, now) for _ in range(3)))
        found["kept runs expired"].append(look(src, now + getattr(source, "KEEP_MARKS", 300.0) + 1))
        with SqliteStore.open(copy) as store:
            at = time.time()
            ids = store.insert_runs([NewRun(name, Trigger.SCHEDULE, 1, at) for name in names], host="h", boot_id="b")
            store.mark_started_many([(run_id, 1, None, at) for run_id in ids])
            for i, run_id in enumerate(ids):
                store.finish_run(run_id, RunStatus.SUCCESS, finished_at=at + 0.5 + i % 7, exit_code=0)
        found["every job moved"].append(look(src, time.time()))
    for what, times in found.items():
        print(f"{'in-process overview, ' + what:<48} " + " ".join(f"{t:7.1f}" for t in times) + " ms")


def jobs_file(path: str, names: list[str]) -> None:
    with open(path, "w") as f:
        for i, name in enumerate(names):
            f.write(f"[job.{name}]\ndescription = \"bench job {i}\"\n*/{1 + i % 30} * * * * /usr/local/bin/{name}\n")


def first_paint(url: str, one_visitor: bool = False) -> list[float]:
    """First contentful paint (ms) of 6 loads after 2. Each load a new page in a new browser
    context (a first visit: nothing cached, a new renderer process), or with `one_visitor`
    one page going to `url` again and again (a visitor clicking from page to page of the
    view: what it loads from /static/ is cached, the process is the same)."""
    from playwright.sync_api import sync_playwright

    paints = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        page = browser.new_context().new_page() if one_visitor else None
        for i in range(8):
            if not one_visitor:
                page = browser.new_page()
            page.goto(url, wait_until="load")
            fcp = None
            for _ in range(50):  # the paint entry is recorded just after (later on a loaded host)
                page.wait_for_timeout(100)
                fcp = page.evaluate("() => (performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime")
                if fcp is not None:
                    break
            if i >= 2:
                paints.append(fcp)
            if not one_visitor:
                page.close()
        browser.close()
    return paints


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--runs-per-job", type=int, default=100)
    parser.add_argument("--big-job-runs", type=int, default=1_000_000)
    parser.add_argument("--dir", help="build here and keep it (default: a temporary directory, removed after)")
    parser.add_argument("--no-browser", action="store_true")
    parser.add_argument("--paint-only", action="store_true", help="only the browser's first paints")
    args = parser.parse_args()
    work = args.dir or tempfile.mkdtemp(prefix="bench-web-")
    os.makedirs(work, exist_ok=True)
    procs = []
    try:
        many, big = os.path.join(work, "many.db"), os.path.join(work, "big.db")
        if not os.path.exists(many):
            secs = build(many, args.jobs, args.runs_per_job)
            print(f"build: {args.jobs:,} jobs x {args.runs_per_job:,} runs in {secs:.1f} s")
        if not os.path.exists(big):
            secs = build(big, 1, args.big_job_runs)
            print(f"build: 1 job x {args.big_job_runs:,} runs in {secs:.1f} s")
            with SqliteStore.open(big) as store:  # and a finished run with 1 MiB of coloured output
                [run_id] = store.insert_runs([NewRun("job-0000", Trigger.MANUAL, 1, 1.0)], host="h", boot_id="b")
                store.mark_started(run_id, 1, None, 1.0)
                line = b"\x1b[32mok\x1b[0m line %07d of a long output, with some <markup> & text\n"
                data = b"".join(line % i for i in range(1 << 20))[: 1 << 20]
                store.finish_run(run_id, RunStatus.SUCCESS, finished_at=2.0, exit_code=0, output=(data, False))
        jobs_file(os.path.join(work, "many.jobs"), [f"job-{j:04d}" for j in range(args.jobs)])
        jobs_file(os.path.join(work, "big.jobs"), ["job-0000"])
        moved = os.path.join(work, "moved.db")  # a copy that gets new runs
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(moved + suffix):
                os.remove(moved + suffix)
        shutil.copy(many, moved)
        print(f"load: {os.getloadavg()[0]:.1f}; {load_factor(many)}")
        proc, many_url, many_start = serve(os.path.join(work, "many.jobs"), many)
        procs.append(proc)
        proc, big_url, big_start = serve(os.path.join(work, "big.jobs"), big)
        procs.append(proc)
        print(f"start-up to the URL: {many_start:.2f} s ({args.jobs:,} jobs), {big_start:.2f} s (1 job)")
        with SqliteStore.open(big, readonly=True) as log:
            newest = log.runs("job-0000", limit=1)[0].id
        if not args.paint_only:
            for what, url in [(f"overview, {args.jobs:,} jobs (HTML)", many_url + "/"),
                              (f"overview, {args.jobs:,} jobs (JSON)", many_url + "/api/overview"),
                              (f"job page, {args.big_job_runs:,} runs (HTML)", big_url + "/jobs/job-0000"),
                              (f"job page, {args.big_job_runs:,} runs (JSON)", big_url + "/api/jobs/job-0000"),
                              (f"job page, {args.big_job_runs:,} runs, status=failed",
                               big_url + "/jobs/job-0000?status=failed"),
                              (f"job page, {args.big_job_runs:,} runs, 2nd page",
                               big_url + f"/jobs/job-0000?before={newest - 50}"),
                              ("run page, 1 MiB output (HTML)", big_url + f"/runs/{newest}"),
                              ("failures, all time (1,000 jobs)", many_url + "/failures?since=2000-01-01"),
                              ("graph", many_url + "/graph")]:
                med, best, worst, cpu, size, first, client = server_ms(url)
                print(f"{what:<48} median {med:7.1f} ms  best {best:7.1f}  worst {worst:7.1f}  cpu {cpu:7.1f}  "
                      f"first {first:7.1f} (client {client:7.1f})  ({size / 1024:.0f} KiB)")
            in_process(work, os.path.join(work, "many.jobs"), many)
            proc, moved_url, _ = serve(os.path.join(work, "many.jobs"), moved)
            procs.append(proc)
            server_ms(moved_url + "/", 3)
            times = moved_ms(moved_url, moved, [f"job-{j:04d}" for j in range(args.jobs)])
            print(f"{'overview after every job got a new run':<48} " + " ".join(f"{t:7.1f}" for t in times) + " ms")
        if not args.no_browser and os.path.exists("/usr/bin/chromium"):
            # The graph page (1 KiB) is the browser's floor on this machine at this moment.
            for what, url, one in [("run page, 1 MiB output: FCP, first visit", big_url + f"/runs/{newest}", False),
                                   ("run page, 1 MiB output: FCP, one visitor", big_url + f"/runs/{newest}", True),
                                   ("graph page, 1 KiB: FCP, first visit", big_url + "/graph", False)]:
                paints = first_paint(url, one)
                print(f"{what:<48} median {statistics.median(paints):7.1f} ms  best {min(paints):7.1f}  "
                      f"worst {max(paints):7.1f}  all {' '.join(f'{p:.0f}' for p in sorted(paints))}")
        print(f"load: {os.getloadavg()[0]:.1f}; {load_factor(many)}")
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait()
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
