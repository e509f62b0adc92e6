"""Backfill: how long the daemon's loop is held by a backfill request, and how fast slots run.

    .venv/bin/python bench/bench_backfill.py [--slots 10000 100000] [--runs 300]

A real daemon in a temp dir with a `* * * * *` job. For each size, `cronsup backfill --yes`
is timed (the daemon lists the times, plans them against the run log and records them in
one transaction before it answers; no job starts meanwhile), then cancelled. Then --runs
slots of `true` are run to the end with --max-parallel 1 and 8, timed with --wait.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import signal
import subprocess
import sys
import tempfile
import time


def cli(tmp: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cronsup", *args, "--jobs", f"{tmp}/jobs", "--db", f"{tmp}/st/runs.db"],
                          capture_output=True, text=True, timeout=600)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--slots", type=int, nargs="*", default=[10_000, 100_000])
    ap.add_argument("--runs", type=int, default=300)
    opts = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        with open(f"{tmp}/jobs", "w") as f:
            f.write('[job.minutely]\ntimezone = "UTC"\n* * * * * true\n')
        daemon = subprocess.Popen([sys.executable, "-m", "cronsup", "daemon", "--jobs", f"{tmp}/jobs",
                                   "--db", f"{tmp}/st/runs.db"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while cli(tmp, "status").returncode != 0:
                if time.monotonic() > deadline:
                    raise SystemExit("the daemon did not start")
                time.sleep(0.1)
            base = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)
            for n in opts.slots:  # each range after the last: none overlaps another
                begin, base = base, base + dt.timedelta(minutes=n)
                t0 = time.perf_counter()
                r = cli(tmp, "backfill", "minutely", "--from", begin.isoformat(), "--to", base.isoformat(), "--yes")
                took = time.perf_counter() - t0
                t0 = time.perf_counter()
                cli(tmp, "backfill", "--cancel", "minutely")
                cancel = time.perf_counter() - t0
                print(f"request of {n:,} slots: {took:.2f} s, the command's start included "
                      f"({r.stdout.strip()[:70]!r}); cancel {cancel:.2f} s")
            for parallel in (1, 8):
                begin, base = base, base + dt.timedelta(minutes=opts.runs)
                t0 = time.perf_counter()
                r = cli(tmp, "backfill", "minutely", "--from", begin.isoformat(), "--to", base.isoformat(),
                        "--max-parallel", str(parallel), "--wait")
                took = time.perf_counter() - t0
                print(f"{opts.runs} slots of `true`, --max-parallel {parallel}: {took:.2f} s "
                      f"({opts.runs / took:.0f} runs/s; exit {r.returncode})")
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(30)
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
