"""Plain commands run directly against the same commands through sh, in the same minute.

    .venv/bin/python bench/bench_plaincmd.py [--jobs 500] [--rounds 3]

Two daemons, each with N jobs `* * * * * STAMP OUT i` due at one instant: one as they are
(cronsup execs them without a shell), one with `;` appended (sh runs them). Both fire at the
same second, so they compete for the same cores under the same load, which alternating runs
a minute apart cannot promise on a shared machine; who starts first alternates by round. The
boundary is moved to :30 of the real minute with CRONSUP_TEST_CLOCK_OFFSET, away from the :00
that peer_bench.py and bench_daemon.py use. Per daemon: lag from the boundary to the jobs'
first instructions (first, median, last).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_daemon import stamp_program  # noqa: E402


def one_round(n: int, flip: bool, base: str, stamp: str) -> str:
    sides = [("direct", ""), ("sh", ";")]
    if flip:
        sides.reverse()
    while not 17.5 <= time.time() % 60 < 19:  # start at :18, for the boundary at :30
        time.sleep(0.2)
    boundary = int(time.time()) // 60 * 60 + 30
    env = dict(os.environ, CRONSUP_TEST_CLOCK_OFFSET="30")
    load = open("/proc/loadavg").read().split()[0]
    daemons = []
    for tag, suffix in sides:
        work = tempfile.mkdtemp(prefix=f"plaincmd-{tag}-", dir=base)
        out = os.path.join(work, "stamps.txt")
        with open(os.path.join(work, "jobs"), "w") as f:
            f.write("SHELL=/bin/sh\nPATH=/usr/local/bin:/usr/bin:/bin\n")
            f.writelines(f"* * * * * {stamp} {out} {i}{suffix}\n" for i in range(n))
        proc = subprocess.Popen([sys.executable, "-m", "cronsup", "daemon", "--jobs", f"{work}/jobs",
                                 "--db", f"{work}/runs.db"], stdout=open(f"{work}/daemon.out", "w"),
                                stderr=subprocess.STDOUT, cwd=work, env=env)
        daemons.append((tag, proc, out))

    def count(path: str) -> int:
        return sum(1 for _ in open(path)) if os.path.exists(path) else 0

    while time.time() < boundary + 25:
        time.sleep(0.5)
        if time.time() > boundary and all(count(out) >= n for _, _, out in daemons):
            break
    parts = []
    for tag, proc, out in daemons:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        lags = sorted(t for t in (float(line.split()[0]) - boundary for line in open(out)) if t > -1)
        parts.append(f"{tag}: {len(lags)} started, first {lags[0]:.3f} p50 {lags[len(lags) // 2]:.3f} "
                     f"last {lags[-1]:.3f} s")
    return f"{time.strftime('%H:%M:%S', time.gmtime(boundary))} load {load}, {sides[0][0]} started first: " + \
        "; ".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=500, help="jobs per daemon")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    base = tempfile.mkdtemp(prefix="bench-plaincmd-")
    try:
        stamp = stamp_program(base)
        for r in range(args.rounds):
            print(one_round(args.jobs, r % 2 == 1, base, stamp), flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
