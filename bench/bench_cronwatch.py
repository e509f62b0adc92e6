"""How fast `cronsup daemon --cron` notices a change to cron's files, and what a rescan costs.

    .venv/bin/python bench/bench_cronwatch.py [--files 200] [--repeats 10]      (as root)

A --cron-root tree with FILES cron.d files (2 jobs each) and root's crontab in the spool.
Each repeat: a new cron.d file, an edit of it, a `crontab -e` save (a temp file renamed over
root's crontab), the new file's removal. Latency is from the change to the run log's `jobs`
table listing (or no longer listing) the job, polled every 5 ms with a read-only SQLite
connection: it includes the watcher's 100 ms quiet step, the rescan of every file, the
supervisor's reload and the jobs table's write. Also check_sources() on the tree in this
process: what each rescan costs the daemon.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from cronsup import cronfiles  # noqa: E402


def names(db: str) -> set[str]:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as c:
            return {row[0] for row in c.execute("SELECT name FROM jobs")}
    except sqlite3.Error:
        return set()


def wait(db: str, predicate, timeout: float = 10) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate(names(db)):
            return time.monotonic() - start
        time.sleep(0.005)
    raise SystemExit("timed out")


def write(path: str, text: str, mode: int = 0o644) -> None:
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="cronwatch-")
    root = os.path.join(tmp, "root")
    cron_d = os.path.join(root, "etc/cron.d")
    spool = os.path.join(root, "var/spool/cron/crontabs")
    os.makedirs(cron_d)
    os.makedirs(spool)
    for i in range(args.files):
        write(os.path.join(cron_d, f"pkg{i}"), f'MAILTO=""\n{i % 60} 3 * * * root /usr/bin/pkg{i}-a\n'
                                               f'{i % 60} 4 * * * root /usr/bin/pkg{i}-b\n')
    write(os.path.join(spool, "root"), 'MAILTO=""\n0 0 1 1 * /usr/local/bin/mine\n', 0o600)
    scans = []
    for _ in range(3):  # the first pays for imports and a cold cache
        t = time.perf_counter()
        found = cronfiles.check_sources(root)
        scans.append(time.perf_counter() - t)
    scan = min(scans)
    db = os.path.join(tmp, "state/runs.db")
    proc = subprocess.Popen([sys.executable, "-m", "cronsup", "daemon", "--cron", "--cron-root", root,
                             "--jobs", os.path.join(tmp, "jobs"), "--db", db],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait(db, lambda n: len(n) == len(found.jobs), 30)
        results: dict[str, list[float]] = {"add": [], "edit": [], "crontab -e": [], "remove": []}
        for r in range(args.repeats):
            new = os.path.join(cron_d, "zz-new")
            write(new, f'MAILTO=""\n0 5 * * * root /usr/bin/added{r}\n')
            results["add"].append(wait(db, lambda n: f"added{r}" in n))
            write(new, f'MAILTO=""\n0 5 * * * root /usr/bin/edited{r}\n')
            results["edit"].append(wait(db, lambda n: f"edited{r}" in n))
            temp = os.path.join(spool, "tmp.bench1")
            write(temp, f'MAILTO=""\n0 0 1 1 * /usr/local/bin/saved{r}\n', 0o600)
            os.rename(temp, os.path.join(spool, "root"))
            results["crontab -e"].append(wait(db, lambda n: f"root-saved{r}" in n))
            os.unlink(new)
            results["remove"].append(wait(db, lambda n: f"edited{r}" not in n))
            time.sleep(0.3)  # apart from the next change (watchfiles groups changes 100 ms apart)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
        shutil.rmtree(tmp)
    print(f"tree: {args.files} cron.d files, {len(found.jobs)} jobs; check_sources: {scan * 1000:.1f} ms")
    for what, values in results.items():
        print(f"{what:<11} median {statistics.median(values) * 1000:6.0f} ms   "
              f"max {max(values) * 1000:6.0f} ms   (n={len(values)})")


if __name__ == "__main__":
    main()
