"""Time the run log's CLI-facing queries on a large log: 1,000 jobs x 1,000 runs by default.

    .venv/bin/python bench/bench_runlog.py [--jobs 1000] [--runs-per-job 1000] [--db PATH]

Builds the log (one executemany in one transaction, runs interleaved in time order the way a
daemon writes them), then times opening, what `status` reads (last_runs + stats for every job),
what `logs` reads (runs(job, limit=50)), a whole `status`-like process including Python start-up,
and the daemon's bulk writes and prune. Prints figures; writes nothing else.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from cronsup.model import RunStatus, Trigger  # noqa: E402
from cronsup.store import DaemonState, JobRow, NewRun, SqliteStore  # noqa: E402
from cronsup.store.sqlite import schema  # noqa: E402

T0 = 1_700_000_000.0
HOST, BOOT = "bench-host", "bench-boot"

# A status per run: mostly successes, some failures of each kind.
STATUS_WEIGHTS = [
    (RunStatus.SUCCESS, 90), (RunStatus.FAILED, 4), (RunStatus.TIMEOUT, 1),
    (RunStatus.KILLED, 1), (RunStatus.SKIPPED, 2), (RunStatus.MISSED, 1),
    (RunStatus.LOST, 0.5), (RunStatus.ERROR, 0.5),
]


def build(path: str, jobs: int, per_job: int) -> float:
    rng = random.Random(42)
    statuses = [s for s, _ in STATUS_WEIGHTS]
    weights = [w for _, w in STATUS_WEIGHTS]
    start = time.perf_counter()
    runlog = SqliteStore.open(path)
    conn = runlog._conn  # bench-only: bulk load below the public API
    conn.execute("PRAGMA cache_size=-262144")  # 256 MiB while loading

    def rows():
        for i in range(per_job):
            picks = rng.choices(statuses, weights, k=jobs)
            for j in range(jobs):
                status = picks[j]
                scheduled = T0 + i * 60.0 + j * 0.001
                ran = status not in (RunStatus.SKIPPED, RunStatus.MISSED)
                started = scheduled + 0.2 if ran else None
                finished = started + rng.uniform(0.5, 30.0) if ran else scheduled
                if i == per_job - 1 and j % 100 == 0:
                    status, finished = RunStatus.RUNNING, None
                yield (
                    f"job-{j:04d}", "schedule", 1, scheduled, started, finished, str(status),
                    0 if status == RunStatus.SUCCESS else (None if not ran else 1),
                    4000 + j if ran else None, started, HOST, BOOT,
                    None if status in (RunStatus.SUCCESS, RunStatus.RUNNING) else f"{status} for a reason",
                    0.1 if ran else None, 10_000_000 if ran else None,
                )

    with runlog._transaction() as tx:
        tx.executemany(
            "INSERT INTO runs (job, trigger, attempt, scheduled_for, started_at, finished_at, "
            "status, exit_code, pid, pid_start, host, boot_id, reason, cpu_s, max_rss) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows(),
        )
        # The counters the daemon would have kept for these runs: the migration's own seeding.
        for statement in next(step for step in schema.MIGRATIONS
                              if "CREATE TABLE counters" in step[0])[1:]:
            tx.execute(statement)
        # Output for the newest 5 runs of each job.
        tx.execute(
            "INSERT INTO outputs (run_id, truncated, data) "
            "SELECT id, 0, randomblob(2048) FROM runs WHERE id > ?",
            ((per_job - 5) * jobs,),
        )
    runlog.set_daemon(DaemonState(pid=1, pid_start=T0, started_at=T0, host=HOST, boot_id=BOOT,
                                  jobs_file="/etc/cronsup/jobs", last_seen=T0))
    runlog.set_jobs([
        JobRow(f"job-{j:04d}", "* * * * *", f"/usr/local/bin/job-{j}", "", T0 + 86400, True, j + 1)
        for j in range(jobs)
    ])
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    runlog.close()
    return time.perf_counter() - start


def timed(fn, repeat: int = 5):
    """Best and median wall time of `repeat` calls, and the last result."""
    times, result = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return min(times), statistics.median(times), result


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f} ms"


STATUS_SCRIPT = """
import sys
sys.path.insert(0, {root!r})
from cronsup.runjson import run_json
from cronsup.store import SqliteStore
log = SqliteStore.open({db!r}, readonly=True)
daemon = log.daemon(); jobs = log.jobs(); paused = log.paused()
last = log.last_runs(); running = log.running()
stats = {{j.name: log.stats(j.name) for j in jobs}}
out = [run_json(last[j.name]) for j in jobs if j.name in last]
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--runs-per-job", type=int, default=1000)
    parser.add_argument("--db", help="build here (default: a temporary directory, removed after)")
    args = parser.parse_args()

    tmp = None
    if args.db:
        path = args.db
    else:
        tmp = tempfile.mkdtemp(prefix="bench-runlog-")
        path = os.path.join(tmp, "runs.db")
    try:
        total = args.jobs * args.runs_per_job
        if not os.path.exists(path):
            secs = build(path, args.jobs, args.runs_per_job)
            print(f"build: {total:,} runs for {args.jobs:,} jobs in {secs:.1f} s "
                  f"({os.path.getsize(path) / 2**20:.0f} MiB)")

        best, med, reader = timed(lambda: SqliteStore.open(path, readonly=True))
        print(f"open readonly           best {ms(best)}  median {ms(med)}")
        names = [j.name for j in reader.jobs()]

        best, med, last = timed(reader.last_runs)
        print(f"last_runs() ({len(last)} jobs)  best {ms(best)}  median {ms(med)}")
        best, med, _ = timed(lambda: [reader.stats(n) for n in names])
        print(f"stats() x {len(names)}           best {ms(best)}  median {ms(med)}")
        best, med, _ = timed(lambda: (reader.daemon(), reader.jobs(), reader.paused(),
                                      reader.last_runs(), reader.running(),
                                      [reader.stats(n) for n in names]))
        print(f"status reads (all)      best {ms(best)}  median {ms(med)}")
        best, med, _ = timed(lambda: reader.history(names, BOOT))
        print(f"history() (start-up)    best {ms(best)}  median {ms(med)}")
        best, med, _ = timed(reader.running)
        print(f"running()               best {ms(best)}  median {ms(med)}")
        best, med, _ = timed(reader.job_names)
        print(f"job_names()             best {ms(best)}  median {ms(med)}")

        sample = random.Random(1).sample(names, min(100, len(names)))
        for label, fn in [
            ("runs(job, limit=50)", lambda n: reader.runs(n, limit=50)),
            ("runs(job, 50, failed)", lambda n: reader.runs(n, limit=50, failed=True)),
            ("runs(job, since=1h)", lambda n: reader.runs(n, since=T0 + (args.runs_per_job - 60) * 60)),
            ("runs(job, after_id)", lambda n: reader.runs(n, after_id=total - 2 * args.jobs)),
            ("last_scheduled(job)", lambda n: reader.last_scheduled(n)),
            ("last_started(job)", lambda n: reader.last_started(n)),
        ]:
            per = []
            for n in sample:
                t = time.perf_counter()
                fn(n)
                per.append(time.perf_counter() - t)
            print(f"{label:23s} median {ms(statistics.median(per))}  max {ms(max(per))}"
                  f"  (over {len(sample)} jobs)")
        reader.close()

        root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
        script = STATUS_SCRIPT.format(root=root, db=path)
        walls = []
        for _ in range(5):
            t = time.perf_counter()
            subprocess.run([sys.executable, "-c", script], check=True)
            walls.append(time.perf_counter() - t)
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        bare = time.perf_counter() - t
        print(f"status-like process     best {ms(min(walls))}  median {ms(statistics.median(walls))}"
              f"  (bare python: {ms(bare)})")

        # The daemon's writes change the log: do them on a copy, so a --db can be reused.
        copy = path + ".bench-copy"
        shutil.copyfile(path, copy)
        t = time.perf_counter()
        writer = SqliteStore.open(copy)
        print(f"open writer (quick_check)     {ms(time.perf_counter() - t)}")
        writer.close()
        t = time.perf_counter()
        writer = SqliteStore.open(copy, check=False)
        print(f"open writer (no check)        {ms(time.perf_counter() - t)}")

        for k in (1, 2, 3):
            batch = [NewRun(f"job-{j:04d}", Trigger.SCHEDULE, 1, T0 + 10**8 + k) for j in range(1000)]
            t = time.perf_counter()
            ids = writer.insert_runs(batch, host=HOST, boot_id=BOOT)
            print(f"insert_runs(1000 rows) #{k}     {ms(time.perf_counter() - t)}")
        t = time.perf_counter()
        writer.mark_started_many([(i, 1, T0, T0 + 10**8) for i in ids])
        print(f"mark_started_many(1000)       {ms(time.perf_counter() - t)}")
        t = time.perf_counter()
        for i in ids[:100]:
            writer.finish_run(i, RunStatus.SUCCESS, finished_at=T0 + 10**8 + 1, exit_code=0)
        print(f"finish_run x 100              {ms(time.perf_counter() - t)}")
        rows = [JobRow(f"job-{j:05d}", "* * * * *", "true", "", None, True, j) for j in range(10_000)]
        t = time.perf_counter()
        writer.set_jobs(rows)
        print(f"set_jobs(10,000 rows)         {ms(time.perf_counter() - t)}")
        t = time.perf_counter()
        deleted = writer.prune(max_runs_per_job=args.runs_per_job // 2, max_age_s=10**9,
                               now=T0 + 10**8)
        print(f"prune(keep {args.runs_per_job // 2}/job): {deleted:,} runs "
              f"in {time.perf_counter() - t:.2f} s")
        t = time.perf_counter()
        deleted = writer.prune(max_runs_per_job=args.runs_per_job // 2, max_age_s=10**9,
                               now=T0 + 10**8)
        print(f"prune again (nothing to do): {deleted} runs in {ms(time.perf_counter() - t)}")
        writer.close()
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(copy + suffix):
                os.unlink(copy + suffix)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
