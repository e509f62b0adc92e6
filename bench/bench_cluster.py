"""Several hosts on one PostgreSQL: 1,000 jobs due at once across three daemons, and `status`
over PostgreSQL with 1,000 jobs and 1,000,000 runs.

    .venv/bin/python bench/bench_cluster.py fire [--jobs 1000] [--nodes 3]
    .venv/bin/python bench/bench_cluster.py status [--jobs 1000] [--runs-per-job 1000] [--repeat 7]

Starts its own throwaway PostgreSQL 15 (tests/pgcluster.py: initdb under a temp dir, as
`nobody` when root, a unix socket and a loopback port) and removes it after. `fire` moves the
database's clock (cronsup.test_clock_offset) so that a minute starts ~15 s after the daemons
are up, then reports: fires claimed and started, duplicates, last start after the minute
(target: all, zero, within 2 s) and each node's share. `status` fills the store with SQL and
times `cronsup status` as an admin runs it (a new process each time; target 300 ms).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))

from pgcluster import Cluster  # noqa: E402

PY = sys.executable


def _cluster() -> Cluster:
    root = Path(tempfile.mkdtemp(prefix="cronsup-bench-pg-"))
    os.chmod(root, 0o755)
    cluster = Cluster(root)
    cluster.init()
    return cluster


def _sql(url: str, sql: str, params=()):
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(sql, params)
        return cur.fetchall() if cur.description else None


def fire(args) -> None:
    cluster = _cluster()
    tmp = Path(tempfile.mkdtemp(prefix="cronsup-bench-fire-"))
    procs = []
    try:
        name = cluster.new_database()
        url = cluster.url(name)
        from cronsup.store import open_store

        open_store(url).close()  # the schema, before the daemons race for it
        now = time.time()
        offset = 60 - now % 60 - 25  # the minute starts 25 s from now on the database's clock
        _sql(url, f"ALTER DATABASE \"{name}\" SET cronsup.test_clock_offset = '{offset}'")
        jobs = tmp / "jobs"
        jobs.write_text('MAILTO=""\n' + "".join(f"[job.j{i:04d}]\n* * * * * true\n" for i in range(args.jobs)))
        for n in range(args.nodes):
            log = open(tmp / f"node{n}.log", "wb")
            procs.append(subprocess.Popen(
                [PY, "-m", "cronsup", "daemon", "--jobs", str(jobs), "--db", url, "--node", f"n{n}",
                 "--state-dir", str(tmp / f"state{n}")], stdout=log, stderr=subprocess.STDOUT,
                env=dict(os.environ, CRONSUP_SENDMAIL="/bin/true")))
        minute = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            got = _sql(url, "SELECT count(*), min(scheduled_for) FROM runs WHERE started_at IS NOT NULL")
            if got[0][0] >= args.jobs:
                minute = got[0][1]
                break
            time.sleep(0.5)
        time.sleep(3)
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(60)
        rows = _sql(url, "SELECT job, scheduled_for, host, started_at, status FROM runs")
        keys = [(r[0], r[1]) for r in rows if r[3] is not None]
        in_minute = [r for r in rows if minute is not None and r[1] == minute]
        started = [r for r in in_minute if r[3] is not None]
        dup = len(keys) - len(set(keys))
        last = max((r[3] for r in started), default=float("nan")) - (minute or 0)
        first = min((r[3] for r in started), default=float("nan")) - (minute or 0)
        share = {}
        for r in started:
            share[r[2]] = share.get(r[2], 0) + 1
        load = os.getloadavg()[0]
        print(f"fire: {args.jobs} jobs due at once on {args.nodes} nodes (load {load:.2f}): "
              f"{len({r[0] for r in started})} claimed and started, {dup} duplicates, "
              f"first start +{first:.2f}s, last start +{last:.2f}s after the minute; "
              f"per node {dict(sorted(share.items()))}")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        cluster.stop("immediate")
        shutil.rmtree(cluster.root, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)


def status(args) -> None:
    cluster = _cluster()
    tmp = Path(tempfile.mkdtemp(prefix="cronsup-bench-status-"))
    try:
        url = cluster.url(cluster.new_database())
        from cronsup.store import open_store

        open_store(url).close()  # the schema
        t0 = time.monotonic()
        n, per = args.jobs, args.runs_per_job
        base = 1_764_000_000.0
        # Each job: runs every 60 s; one in 20 failed; the newest is running for a third of them.
        _sql(url, f"""INSERT INTO runs (job, trigger, attempt, scheduled_for, started_at, finished_at,
            status, exit_code, host, boot_id, owner)
            SELECT format('job-%%s', lpad(j::text, 4, '0')), 'schedule', 1, {base} + k * 60,
                   {base} + k * 60 + 0.01, {base} + k * 60 + 1.5,
                   CASE WHEN k %% 20 = 7 THEN 'failed' ELSE 'success' END,
                   CASE WHEN k %% 20 = 7 THEN 1 ELSE 0 END, 'bench', 'b', 'x'
            FROM generate_series(0, {per - 1}) k, generate_series(0, {n - 1}) j ORDER BY k, j""")
        _sql(url, "ANALYZE")
        print(f"filled {n * per} runs in {time.monotonic() - t0:.1f}s")
        jobs = tmp / "jobs"
        jobs.write_text('MAILTO=""\n' + "".join(f"[job.job-{i:04d}]\n*/5 * * * * true\n" for i in range(n)))
        cmd = [PY, "-m", "cronsup", "status", "--jobs", str(jobs), "--db", url, "--node", "bench",
               "--state-dir", str(tmp / "state")]
        # As installed, cronsup's modules have their bytecode; the warm-up run writes it here
        # (without it, each run compiled cronsup's source: ~100 ms of the figures before 2026-12-02).
        env = dict(os.environ)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        for label, extra in (("status", []), ("status --json", ["--json"])):
            subprocess.run(cmd + extra, capture_output=True, env=env)  # warm-up
            times = []
            for _ in range(args.repeat):
                t = time.monotonic()
                done = subprocess.run(cmd + extra, capture_output=True, text=True, env=env)
                times.append((time.monotonic() - t) * 1000)
                assert done.returncode in (0, 3), done.stderr
            print(f"{label}: median {statistics.median(times):.0f} ms, best {min(times):.0f} ms "
                  f"(load {os.getloadavg()[0]:.2f})")
        t = time.monotonic()
        subprocess.run([PY, "-c", "import psycopg"], check=True)
        print(f"(python -c 'import psycopg' alone: {(time.monotonic() - t) * 1000:.0f} ms)")
    finally:
        cluster.stop("immediate")
        shutil.rmtree(cluster.root, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["fire", "status"])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--runs-per-job", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    fire(args) if args.what == "fire" else status(args)


if __name__ == "__main__":
    main()
