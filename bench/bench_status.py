"""`cronsup status` on 1,000 jobs and 1,000,000 runs on both stores, code trees alternated.

    .venv/bin/python bench/bench_status.py [--tree NAME=DIR ...] [--rounds 7] [--dir DIR]
        [--pg-url URL --pg-jobs FILE]

Builds the SQLite run log and jobs file of bench_cli.py (kept in --dir and reused when it is
given) and a throwaway PostgreSQL filled as `bench_cluster.py status` fills it (or uses
--pg-url, already filled that way, with --pg-jobs). Then, round after round, runs every case
once with each tree in turn, so that before and after meet the same load: a tree NAME=DIR runs
`python -m cronsup` with PYTHONPATH=DIR (a `git archive` export of an older commit; the
default is this worktree). Cases: `status` and `status --json`, each with the daemon stopped
(jobs and next runs from the jobs file) and running (the tree's own `cronsup daemon` on the
run log, its jobs those of the file with schedules due next new year, so that none runs;
started before a tree's running cases, stopped after them). Bytecode is written and used, as for an installed package. Prints, per case
and tree, the median and best wall time of the rounds and the median CPU time of the
`cronsup` process itself (which the load disturbs less; it leaves out the database server's
work), and the 1-minute load average of each round.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT), str(ROOT / "tests")]

import bench_cli  # noqa: E402
import bench_runlog  # noqa: E402

NODE = "bench"
TARGET_MS = 300.0


def fill_pg(url: str, jobs: int, per_job: int, jobs_path: Path) -> None:
    """bench_cluster.py's data: runs every 60 s, one in 20 failed; its jobs file."""
    import bench_cluster
    from cronsup.store import open_store

    open_store(url).close()  # the schema
    base = 1_764_000_000.0
    bench_cluster._sql(url, f"""INSERT INTO runs (job, trigger, attempt, scheduled_for, started_at,
        finished_at, status, exit_code, host, boot_id, owner)
        SELECT format('job-%%s', lpad(j::text, 4, '0')), 'schedule', 1, {base} + k * 60,
               {base} + k * 60 + 0.01, {base} + k * 60 + 1.5,
               CASE WHEN k %% 20 = 7 THEN 'failed' ELSE 'success' END,
               CASE WHEN k %% 20 = 7 THEN 1 ELSE 0 END, 'bench', 'b', 'x'
        FROM generate_series(0, {per_job - 1}) k, generate_series(0, {jobs - 1}) j ORDER BY k, j""")
    bench_cluster._sql(url, "ANALYZE")
    jobs_path.write_text('MAILTO=""\n' + "".join(f"[job.job-{i:04d}]\n*/5 * * * * true\n" for i in range(jobs)))


def register_node(url: str, jobs: int) -> None:
    """The node row and jobs a running daemon named NODE would have written."""
    from cronsup.store import DaemonState, JobRow, open_store

    store = open_store(url, node=NODE)
    try:
        now = time.time()
        store.set_daemon(DaemonState(pid=os.getpid(), pid_start=now, started_at=now - 3600,
                                     host=NODE, boot_id="b", jobs_file="/etc/cronsup/jobs",
                                     last_seen=now))
        store.set_jobs([JobRow(f"job-{j:04d}", "*/5 * * * *", "true", "", now + 300, True, 2 * j + 3)
                        for j in range(jobs)])
    finally:
        store.close()


def quiet_jobs(jobs_path: str, out: Path) -> str:
    """The jobs file with every schedule moved to next new year: the same jobs, none runs."""
    text = Path(jobs_path).read_text()
    out.write_text(re.sub(r"(?m)^(?:@every \S+|@\w+|(?:\S+ ){4}\S+) (?=/usr/local/bin/|true$)",
                          "0 0 1 1 * ", text))
    return str(out)


class Daemon:
    """The tree's own daemon on the run log (keeping every run: the runs are a year old)."""

    def __init__(self, tree: str, argv: list[str], env: dict[str, str], log: Path):
        self.tree, self.env, self.log = tree, dict(env, PYTHONPATH=tree), log
        db, jobs = argv[argv.index("--db") + 1], argv[argv.index("--jobs") + 1]
        extra = argv[argv.index("--node"):] if "--node" in argv else []
        self.argv = [sys.executable, "-m", "cronsup", "daemon", "--jobs",
                     quiet_jobs(jobs, log.with_suffix(".jobs")), "--db", db, "--keep-days", "100000",
                     "--keep-size", "100GiB", *extra]
        self.status = ["status", "--jobs", jobs, "--db", db, *extra]

    def __enter__(self) -> Daemon:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.argv, env=self.env, cwd=self.tree, stdout=out, stderr=out)
        deadline = time.monotonic() + 120
        while subprocess.run([sys.executable, "-m", "cronsup", *self.status], env=self.env, cwd=self.tree,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{self.tree}: the daemon did not come up; see {self.log}:\n"
                                 + self.log.read_text()[-2000:])
            time.sleep(0.2)
        return self

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        self.proc.wait(60)


def run_once(tree: str, args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall time and the process's own CPU time (user + system), in ms."""
    env = dict(env, PYTHONPATH=tree)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    # cwd is the tree: `python -m` puts the working directory before PYTHONPATH.
    done = subprocess.run([sys.executable, "-m", "cronsup", *args], env=env, cwd=tree,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode not in (0, 3):  # 3: no daemon runs (the stopped cases)
        raise SystemExit(f"{tree}: cronsup {' '.join(args)} exited {done.returncode}:\n"
                         f"{done.stderr.decode(errors='replace')}")
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall * 1000, cpu * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", action="append", default=[], metavar="NAME=DIR")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--runs-per-job", type=int, default=1000)
    parser.add_argument("--dir", help="keep the SQLite files here and reuse them")
    parser.add_argument("--pg-url", help="a PostgreSQL database already filled as this script fills one")
    parser.add_argument("--pg-jobs", help="the jobs file for --pg-url")
    parser.add_argument("--only", choices=["sqlite", "postgres"], help="one store only")
    args = parser.parse_args()
    trees = [tuple(t.split("=", 1)) for t in args.tree] or [("this", str(ROOT))]
    tmp = Path(tempfile.mkdtemp(prefix="bench-status-"))
    sq_dir = Path(args.dir).resolve() if args.dir else tmp / "sqlite"
    sq_dir.mkdir(parents=True, exist_ok=True)
    cluster = None
    try:
        cases: list[tuple[str, list[str], str | None, str | None]] = []  # label, argv, db, state dir
        if args.only != "postgres":
            db, jobs = str(sq_dir / "runs.db"), str(sq_dir / "jobs")
            if not os.path.exists(db):
                secs = bench_runlog.build(db, args.jobs, args.runs_per_job)
                print(f"built the SQLite run log in {secs:.0f} s")
            bench_cli.write_jobs(jobs, args.jobs)
            for running in (False, True):
                for extra in ([], ["--json"]):
                    label = f"sqlite {'running' if running else 'stopped'} status {' '.join(extra)}"
                    cases.append((label, ["status", *extra, "--jobs", jobs, "--db", db],
                                  db if running else None, None))
        if args.only != "sqlite":
            url, pg_jobs = args.pg_url, args.pg_jobs
            if url is None:
                import bench_cluster

                cluster = bench_cluster._cluster()
                url = cluster.url(cluster.new_database())
                pg_jobs = str(tmp / "pg-jobs")
                t = time.monotonic()
                fill_pg(url, args.jobs, args.runs_per_job, Path(pg_jobs))
                print(f"filled PostgreSQL in {time.monotonic() - t:.0f} s")
            register_node(url, args.jobs)
            state = str(tmp / "state")
            for running in (False, True):
                for extra in ([], ["--json"]):
                    label = f"postgres {'running' if running else 'stopped'} status {' '.join(extra)}"
                    cases.append((label, ["status", *extra, "--jobs", pg_jobs, "--db", url, "--node",
                                          NODE, "--state-dir", state], url if running else None, state))
        env = dict(os.environ, NO_COLOR="1")
        env.pop("COLUMNS", None)
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # as installed: bytecode written once, then read
        times: dict[tuple[str, str], list[tuple[float, float]]] = {}
        loads: list[float] = []
        # The cases by what they need: nothing, or a store's daemon running.
        groups: dict[str | None, list[tuple[str, list[str]]]] = {}
        for label, argv, db, _ in cases:
            groups.setdefault(db, []).append((label, argv))

        def each(name: str, tree: str, timed: bool) -> None:
            for db, group in groups.items():
                log = tmp / f"daemon-{name}.log"
                with Daemon(tree, group[0][1], env, log) if db else contextlib.nullcontext():
                    for label, argv in group:
                        took = run_once(tree, argv, env)
                        if timed:
                            times.setdefault((label, name), []).append(took)

        for name, tree in trees:  # warm-up, untimed (writes the bytecode)
            each(name, tree, timed=False)
        floors: dict[str, list[float]] = {}  # what every command pays before its own work
        for _ in range(args.rounds):
            loads.append(os.getloadavg()[0])
            for label, code in (("python -c pass", "pass"), ("python -c 'import psycopg'", "import psycopg")):
                t = time.perf_counter()
                subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=tmp)
                floors.setdefault(label, []).append((time.perf_counter() - t) * 1000)
            for name, tree in trees:
                each(name, tree, timed=True)
        print(f"{args.rounds} rounds; load average (1 min) at each round's start: "
              + ", ".join(f"{x:.2f}" for x in loads))
        for label, *_ in cases:
            cells = []
            for name, _ in trees:
                wall = [w for w, _ in times[label, name]]
                cpu = [c for _, c in times[label, name]]
                cells.append(f"{name} {statistics.median(wall):4.0f} (best {min(wall):4.0f}) ms, "
                             f"CPU {statistics.median(cpu):4.0f}")
            print(f"{label:34s} " + " | ".join(cells))
        for label, walls in floors.items():
            print(f"{label:34s} {statistics.median(walls):4.0f} (best {min(walls):4.0f}) ms")
    finally:
        if cluster is not None:
            cluster.stop("immediate")
            shutil.rmtree(cluster.root, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
