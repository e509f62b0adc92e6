"""Parse and validate a generated 10,000-job file, then compute every job's next fire time.

Target (issue 2): under 1 second on the project's 2-core machine.
    python bench/bench_jobsfile.py [--jobs 10000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from cronsup import jobsfile, schedule  # noqa: E402
from cronsup.model import Cron  # noqa: E402

EXPRESSIONS = ["*/5 * * * *", "0 2 * * *", "30 4 1,15 * 1-5", "0 0 1 1 *", "23 0-23/2 * * *",
               "5-55/10 * * * *", "0 9-17 * * mon-fri", "@daily", "@hourly", "15 3 * * sun",
               "0 */6 * * *", "45 23 28-31 * *"]


def generate(n: int, rng: random.Random) -> str:
    lines = ["SHELL=/bin/bash", "PATH=/usr/local/bin:/usr/bin:/bin", "CRON_TZ=Europe/Berlin",
             "[defaults]", 'timeout = "1h"', ""]
    for i in range(n):
        expr = rng.choice(EXPRESSIONS)
        kind = i % 4
        if kind == 0:
            lines.append(f"{expr} /usr/local/bin/task-{i} --flag > /dev/null 2>&1")
        elif kind == 1:
            lines += [f"[job.job-{i}]", f'description = "job number {i}"', "retries = 2",
                      'retry_delay = "30s"', f"{expr} /usr/local/bin/run --id {i}"]
        elif kind == 2:
            lines += [f"# job {i}", f"{expr} cd /srv/app{i} && ./maintenance.sh%input {i}"]
        else:
            lines += [f"[job.chain-{i}]", 'overlap = "queue"', 'output_limit = "64KiB"',
                      f"{expr} nice -n 10 /opt/tools/chain{i}.py"]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--jobs", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    text = generate(args.jobs, random.Random(1))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "jobs")
        with open(path, "w") as f:
            f.write(text)
        parse_times, next_times = [], []
        now = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.timezone.utc)
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            jf = jobsfile.load(path)
            t1 = time.perf_counter()
            for job in jf.jobs:
                if isinstance(job.schedule, Cron):
                    schedule.next_fire(job.schedule, now, schedule.load_zone(job.timezone))
            t2 = time.perf_counter()
            parse_times.append(t1 - t0)
            next_times.append(t2 - t1)
    total = [a + b for a, b in zip(parse_times, next_times)]
    print(f"jobs: {len(jf.jobs)}, file: {len(text) / 1e6:.2f} MB, repeats: {args.repeats}")
    print(f"parse+validate: median {statistics.median(parse_times):.3f} s")
    print(f"next fire, all jobs: median {statistics.median(next_times):.3f} s")
    print(f"total: median {statistics.median(total):.3f} s, max {max(total):.3f} s (target < 1 s)")


if __name__ == "__main__":
    main()
