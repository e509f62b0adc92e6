"""Time the admin's commands as whole processes on a big run log: 1,000 jobs, 1,000,000 runs.

    .venv/bin/python bench/bench_cli.py [--jobs 1000] [--runs-per-job 1000] [--repeat 7] [--dir DIR]

Builds the run log with bench_runlog's builder and a jobs file naming the same 1,000 jobs,
then times `cronsup status`, `cronsup status --json` and `cronsup logs JOB -n 50` the way an
admin runs them: a new `python -m cronsup` process each time, Python's start-up included. Each
is timed with the daemon stopped (jobs and next runs come from the jobs file) and "running"
(this script holds the daemon's lock, so jobs come from the run log). Prints the median and
best of `--repeat` runs after one untimed warm-up run (which also writes the bytecode an
installed package has); the target is 300 ms each. Writes nothing but the temporary files.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)

import bench_runlog  # noqa: E402

TARGET_MS = 300.0


def write_jobs(path: str, jobs: int) -> None:
    """The jobs the run log names (job-0000 ...), with a mix of schedules and option blocks."""
    exprs = ["* * * * *", "*/5 * * * *", "0 2 * * *", "30 4 1,15 * 1-5", "@hourly", "@every 90s"]
    lines = ["SHELL=/bin/bash", "PATH=/usr/local/bin:/usr/bin:/bin", "", "[defaults]",
             'timeout = "1h"', ""]
    for j in range(jobs):
        lines += [f"[job.job-{j:04d}]", f'description = "bench job {j}"', "retries = 1",
                  f"{exprs[j % len(exprs)]} /usr/local/bin/job-{j} --flag", ""]
    with open(path, "w") as f:
        f.write("\n".join(lines))


def time_command(args: list[str], env: dict[str, str], repeat: int) -> tuple[float, float, int]:
    """Median and best wall time of `repeat` runs of `python -m cronsup ARGS`, and output size."""
    walls, size = [], 0
    subprocess.run([sys.executable, "-m", "cronsup", *args], env=env, cwd=ROOT,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # warm-up, untimed
    for _ in range(repeat):
        t = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "cronsup", *args], env=env, cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        walls.append(time.perf_counter() - t)
        if done.returncode not in (0, 3):  # 3: status says no daemon runs (as when stopped)
            raise SystemExit(f"cronsup {' '.join(args)} exited {done.returncode}:\n"
                             f"{done.stderr.decode(errors='replace')}")
        size = len(done.stdout)
    return statistics.median(walls), min(walls), size


def hold_daemon_lock(db: str) -> int:
    """Pose as a running daemon: hold <db>.lock the way the daemon does."""
    fd = os.open(db + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def answer_pings(db: str) -> socket.socket:
    """Pose as a running daemon's control socket (<db>.sock): `status` pings it (since fa0289f,
    a lock holder that does not answer within 2 s is shown as not answering, exit 4)."""
    return answer_pings_at(os.path.abspath(db) + ".sock")


def answer_pings_at(path: str) -> socket.socket:
    """Answer every request on the unix socket `path` with a daemon's ping answer."""
    if os.path.exists(path):
        os.unlink(path)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(16)

    def serve() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                data = b""
                while not data.endswith(b"\n"):
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                conn.sendall(b'{"ok": true, "pid": %d}\n' % os.getpid())

    threading.Thread(target=serve, daemon=True).start()
    return srv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--runs-per-job", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--dir", help="keep the files here and reuse them (default: a temporary directory)")
    args = parser.parse_args()

    tmp = args.dir or tempfile.mkdtemp(prefix="bench-cli-")
    os.makedirs(tmp, exist_ok=True)
    db, jobs_path = os.path.join(tmp, "runs.db"), os.path.join(tmp, "jobs")
    try:
        if not os.path.exists(db):
            secs = bench_runlog.build(db, args.jobs, args.runs_per_job)
            print(f"build: {args.jobs * args.runs_per_job:,} runs for {args.jobs:,} jobs in "
                  f"{secs:.1f} s ({os.path.getsize(db) / 2**20:.0f} MiB)")
        write_jobs(jobs_path, args.jobs)
        env = dict(os.environ, CRONSUP_DB=db, CRONSUP_JOBS=jobs_path, NO_COLOR="1")
        env.pop("COLUMNS", None)
        # As installed, cronsup's modules have their bytecode; the warm-up run writes it here.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        bare = statistics.median(
            _wall([sys.executable, "-c", "pass"]) for _ in range(args.repeat))
        print(f"bare python start-up: {bare * 1000:.0f} ms (included in every figure below)")
        commands = [["status"], ["status", "--json"], ["logs", "job-0500", "-n", "50"]]
        worst = 0.0
        for label, running in (("daemon stopped", False), ("daemon running", True)):
            fd = hold_daemon_lock(db) if running else None
            srv = answer_pings(db) if running else None
            try:
                print(f"-- {label}")
                for cmd in commands:
                    med, best, size = time_command(cmd, env, args.repeat)
                    worst = max(worst, med)
                    flag = "ok" if med * 1000 <= TARGET_MS else "OVER"
                    print(f"cronsup {' '.join(cmd):24s} median {med * 1000:6.0f} ms  "
                          f"best {best * 1000:6.0f} ms  ({size:,} bytes out)  {flag}")
            finally:
                if fd is not None:
                    os.close(fd)
                if srv is not None:
                    srv.close()
                    os.unlink(os.path.abspath(db) + ".sock")
        print(f"worst median {worst * 1000:.0f} ms; target {TARGET_MS:.0f} ms")
    finally:
        if not args.dir:
            shutil.rmtree(tmp, ignore_errors=True)


def _wall(argv: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(argv, check=True)
    return time.perf_counter() - t


if __name__ == "__main__":
    main()
