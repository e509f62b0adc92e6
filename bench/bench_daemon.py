"""Direct measures of the cronsup daemon, beside ../shared/bench/peer_bench.py.

    .venv/bin/python bench/bench_daemon.py [fire|idle|reload|output|all] [options]

fire    N jobs `* * * * *`, each a tiny program that writes its first CLOCK_REALTIME reading
        (the job's process running) to a file. Lag from each minute boundary to that reading:
        first, median, p99, last, per boundary. Stamps from before the first boundary are the
        daemon's start-up run of the minute that had just passed (cronsup runs a fire up to
        60 s old when it starts) and are left out. Also the daemon's own view (run log
        started_at - scheduled_for) and its CPU for the window.
idle    N jobs never due (`0 0 1 1 *`), daemon settled; over a window: CPU seconds, RSS, and
        wake-ups per thread (context switches from /proc/PID/task/*/status).
reload  N-job file loaded; one job added by writing a temp file and renaming it over the
        jobs file. Time from the rename until the run log's `jobs` table lists the new job
        with its next run (the daemon writes it right after the supervisor has it), polled
        with a read-only SQLite connection. Median of --repeats edits.
output  One job printing --output-bytes (1 GiB) of zeros with the default output_limit (1 MiB),
        started with `cronsup run`; the daemon's RSS sampled every few ms: peak growth over the
        settled RSS, time to drain the flood, stored output size.

Every workload runs its own daemon in a temp dir (removed afterwards, with --keep kept),
stops it with SIGTERM (SIGKILL after 15 s), and signals only processes it started.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import psutil

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
NEVER = "0 0 1 1 *"
EVERY = "* * * * *"

STAMP_C = r"""
#include <fcntl.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (argc < 3) return 2;
    char buf[128];
    int n = snprintf(buf, sizeof buf, "%lld.%09ld %s\n", (long long)ts.tv_sec, ts.tv_nsec, argv[2]);
    int fd = open(argv[1], O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, buf, n) != n) return 1;
    return close(fd) ? 1 : 0;
}
"""


def log(*parts) -> None:
    print("[%s]" % time.strftime("%H:%M:%S"), *parts, file=sys.stderr, flush=True)


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    k = (len(xs) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


CRONSUP: list[str] = []  # --cronsup: how to run cronsup, for comparing another checkout


def cronsup_argv() -> list[str]:
    if CRONSUP:
        return CRONSUP
    script = os.path.join(os.path.dirname(sys.executable), "cronsup")
    return [script] if os.path.exists(script) else [sys.executable, "-m", "cronsup"]


def stamp_program(work: str) -> str:
    """A static C program writing its start time; `sh`+`date` (two more execs) without cc."""
    exe = os.path.join(work, "stamp")
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc:
        src = exe + ".c"
        with open(src, "w") as f:
            f.write(STAMP_C)
        for extra in (["-static"], []):
            if subprocess.run([cc, "-O2", *extra, "-o", exe, src], stderr=subprocess.DEVNULL).returncode == 0:
                return exe
    log("no C compiler: stamps come from sh+date, start lags include two more execs")
    with open(exe, "w") as f:
        f.write('#!/bin/sh\necho "$(date +%s.%N) $2" >> "$1"\n')
    os.chmod(exe, 0o755)
    return exe


# -- the daemon under test -------------------------------------------------------------------


class Daemon:
    """One `cronsup daemon` in a temp dir of its own."""

    def __init__(self, tag: str, keep: bool = False):
        self.work = tempfile.mkdtemp(prefix=f"cronsup-bench-{tag}-")
        self.jobs = os.path.join(self.work, "jobs")
        self.db = os.path.join(self.work, "runs.db")
        self.keep = keep
        self.proc: subprocess.Popen | None = None
        self.ps: psutil.Process | None = None

    def write_jobs(self, lines: list[str], path: str | None = None) -> None:
        text = "SHELL=/bin/sh\nPATH=/usr/local/bin:/usr/bin:/bin\n" + "".join(l + "\n" for l in lines)
        with open(path or self.jobs, "w") as f:
            f.write(text)
        os.chmod(path or self.jobs, 0o644)

    def start(self) -> None:
        out = open(os.path.join(self.work, "daemon.out"), "ab")
        self.t_spawn = time.monotonic()
        self.proc = subprocess.Popen(
            [*cronsup_argv(), "daemon", "--jobs", self.jobs, "--db", self.db],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=self.work)
        out.close()
        self.ps = psutil.Process(self.proc.pid)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def cpu(self) -> float:
        t = self.ps.cpu_times()
        return t.user + t.system

    def status_kb(self) -> dict[str, int]:
        out = {}
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key] = int(value.split()[0])
        return out

    def threads(self) -> dict[int, tuple[int, float]]:
        """tid -> (context switches, CPU seconds) of each of the daemon's threads."""
        out = {}
        tick = os.sysconf("SC_CLK_TCK")
        base = f"/proc/{self.proc.pid}/task"
        for tid in os.listdir(base):
            try:
                with open(f"{base}/{tid}/status") as f:
                    switches = sum(int(line.split()[1]) for line in f if "ctxt_switches" in line)
                with open(f"{base}/{tid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                out[int(tid)] = (switches, (int(fields[11]) + int(fields[12])) / tick)
            except (FileNotFoundError, ProcessLookupError):
                continue
        return out

    def reader(self) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, isolation_level=None, timeout=5)

    def wait_loaded(self, n: int, timeout: float = 120.0) -> float:
        """Wait until the run log's jobs table holds n jobs; the monotonic time it did."""
        deadline = time.monotonic() + timeout
        conn = None
        while time.monotonic() < deadline:
            if not self.alive():
                raise SystemExit(f"daemon exited ({self.proc.returncode}); see {self.work}/daemon.out")
            try:
                conn = conn or self.reader()
                if conn.execute("SELECT count(*) FROM jobs").fetchone()[0] == n:
                    conn.close()
                    return time.monotonic()
            except sqlite3.Error:
                if conn is not None:
                    conn.close()
                conn = None
            time.sleep(0.02)
        raise SystemExit(f"the daemon did not list {n} jobs within {timeout:.0f}s")

    def wait_quiet(self, quiet: float = 1.0, timeout: float = 60.0) -> None:
        """Until the daemon's CPU time stays the same for `quiet` s (or timeout)."""
        end = time.monotonic() + timeout
        last, since = self.cpu(), time.monotonic()
        while time.monotonic() < end:
            time.sleep(0.05)
            now, cpu = time.monotonic(), self.cpu()
            if cpu != last:
                last, since = cpu, now
            elif now - since >= quiet:
                return

    def stop(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def close(self) -> None:
        self.stop()
        if self.keep:
            log("kept", self.work)
        else:
            shutil.rmtree(self.work, ignore_errors=True)


# -- workloads -------------------------------------------------------------------------------


def w_fire(n: int, minutes: int, lead: float, keep: bool) -> dict:
    d = Daemon(f"fire{n}", keep)
    try:
        stamp = stamp_program(d.work)
        out = os.path.join(d.work, "stamps.txt")
        d.write_jobs([f"{EVERY} {stamp} {out} {i}" for i in range(n)])
        left = 60 - time.time() % 60
        if left < lead:
            time.sleep(left + 0.05)
        left = 60 - time.time() % 60
        if left > lead:
            time.sleep(left - lead)
        d.start()
        b0 = (int(time.time()) // 60 + 1) * 60
        bounds = [b0 + 60 * k for k in range(minutes)]
        log(f"fire n={n}: daemon {d.proc.pid} up, boundaries at :00 for {minutes} min")
        d.wait_loaded(n)
        time.sleep(max(0.0, b0 - 3 - time.time()))
        cpu0 = d.cpu()
        lines = 0
        while time.time() < bounds[-1] + 58:
            time.sleep(0.5)
            if not d.alive():
                raise SystemExit(f"daemon exited ({d.proc.returncode}); see {d.work}/daemon.out")
            if time.time() > bounds[-1] + 1 and os.path.exists(out):
                with open(out) as f:
                    lines = sum(1 for line in f if float(line.split()[0]) >= bounds[-1] - 1)
                if lines >= n:
                    time.sleep(0.5)
                    break
        cpu = d.cpu() - cpu0
        mem = d.status_kb()
        stamps: list[float] = []
        with open(out) as f:
            stamps = [float(line.split()[0]) for line in f]
        conn = d.reader()
        own = conn.execute("SELECT scheduled_for, started_at FROM runs WHERE trigger = 'schedule' "
                           "AND started_at IS NOT NULL").fetchall()
        conn.close()
        rows = []
        for b in bounds:
            lags = [t - b for t in stamps if b - 1 <= t < b + 59]
            spawn = [s - sch for sch, s in own if sch == b]
            rows.append({"boundary": time.strftime("%H:%M", time.localtime(b)), "count": len(lags),
                         "first_s": min(lags, default=float("nan")), "p50_s": pct(lags, 50),
                         "p99_s": pct(lags, 99), "last_s": max(lags, default=float("nan")),
                         "runlog_started_p50_s": pct(spawn, 50), "runlog_started_last_s": max(spawn, default=float("nan"))})
        med = lambda k: statistics.median(r[k] for r in rows if r["count"])
        startup = sum(1 for t in stamps if t < b0 - 1)
        return {"workload": "fire", "n": n, "minutes": minutes, "received": sum(r["count"] for r in rows),
                "expected": n * minutes, "startup_runs_left_out": startup,
                "first_s": med("first_s"), "p50_s": med("p50_s"), "p99_s": med("p99_s"), "last_s": med("last_s"),
                "max_last_s": max(r["last_s"] for r in rows if r["count"]),
                "all_lags_p99_s": pct([t - b for b in bounds for t in stamps if b - 1 <= t < b + 59], 99),
                "daemon_cpu_s": cpu, "rss_kb": mem.get("VmRSS"), "hwm_kb": mem.get("VmHWM"), "per_boundary": rows}
    finally:
        d.close()


def w_idle(n: int, seconds: float, keep: bool) -> dict:
    d = Daemon(f"idle{n}", keep)
    try:
        d.write_jobs([f"{NEVER} /bin/true idle {i}" for i in range(n)])
        d.start()
        d.wait_loaded(n)
        d.wait_quiet(quiet=1.0, timeout=30)
        time.sleep(2.0)
        c0, th0, t0 = d.cpu(), d.threads(), time.monotonic()
        log(f"idle n={n}: measuring {seconds:.0f}s")
        time.sleep(seconds)
        c1, th1, t1 = d.cpu(), d.threads(), time.monotonic()
        mem = d.status_kb()
        window = t1 - t0
        per_thread = {}
        for tid, (sw, cpu) in th1.items():
            sw0, cpu0 = th0.get(tid, (0, 0.0))
            per_thread["main" if tid == d.proc.pid else f"thread {tid}"] = {
                "wakeups": sw - sw0, "wakeups_per_min": round((sw - sw0) * 60 / window, 1),
                "cpu_s": round(cpu - cpu0, 3)}
        return {"workload": "idle", "n": n, "window_s": round(window, 1), "cpu_s": c1 - c0,
                "cpu_pct": 100 * (c1 - c0) / window, "rss_kb": mem.get("VmRSS"), "hwm_kb": mem.get("VmHWM"),
                "threads": per_thread}
    finally:
        d.close()


def w_reload(n: int, repeats: int, timeout: float, keep: bool) -> dict:
    d = Daemon(f"reload{n}", keep)
    try:
        lines = [f"{NEVER} /bin/true reload {i}" for i in range(n)]
        d.write_jobs(lines)
        d.start()
        t_loaded = d.wait_loaded(n, timeout=300)
        startup_s = t_loaded - d.t_spawn
        d.wait_quiet(quiet=1.0, timeout=60)
        conn = d.reader()
        runs = []
        for r in range(repeats):
            probe = f"reload-probe-{r}"
            lines.append(f"{NEVER} /bin/true {probe}")
            tmp = os.path.join(d.work, ".jobs.tmp")
            d.write_jobs(lines, tmp)
            cpu0 = d.cpu()
            os.rename(tmp, d.jobs)
            t_edit = time.monotonic()
            seen = None
            polls = 0
            while time.monotonic() - t_edit < timeout:
                polls += 1
                row = conn.execute("SELECT next_run FROM jobs WHERE command = ?",
                                   (f"/bin/true {probe}",)).fetchone()
                if row is not None and row[0] is not None:
                    seen = time.monotonic()
                    break
                time.sleep(0.005)
            if seen is None:
                runs.append({"scheduled_s": None})
                continue
            count = conn.execute("SELECT count(*) FROM jobs").fetchone()[0]
            d.wait_quiet(quiet=1.0, timeout=60)
            runs.append({"scheduled_s": seen - t_edit, "poll_interval_s": (seen - t_edit) / polls,
                         "jobs_listed": count, "cpu_s": d.cpu() - cpu0})
            log(f"reload n={n} #{r}: new job listed after {seen - t_edit:.3f}s")
        conn.close()
        done = [x["scheduled_s"] for x in runs if x.get("scheduled_s") is not None]
        return {"workload": "reload", "n": n, "repeats": repeats, "startup_listed_s": startup_s,
                "scheduled_s": statistics.median(done) if done else None,
                "max_s": max(done) if done else None,
                "cpu_s": statistics.median(x["cpu_s"] for x in runs if "cpu_s" in x) if done else None,
                "rss_kb": d.status_kb().get("VmRSS"), "runs": runs}
    finally:
        d.close()


def w_output(size: int, others: int, keep: bool) -> dict:
    d = Daemon("output", keep)
    try:
        d.write_jobs([f"{NEVER} head -c {size} /dev/zero"] + [f"{NEVER} /bin/true idle {i}" for i in range(others)])
        d.start()
        d.wait_loaded(1 + others)
        d.wait_quiet(quiet=1.0, timeout=30)
        time.sleep(1.0)
        base = d.status_kb()
        samples: list[int] = []
        stop = threading.Event()
        rss_path = f"/proc/{d.proc.pid}/statm"
        page_kb = os.sysconf("SC_PAGE_SIZE") // 1024

        def sample() -> None:
            with open(rss_path) as f:
                while not stop.is_set():
                    f.seek(0)
                    samples.append(int(f.read().split()[1]) * page_kb)
                    time.sleep(0.002)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        cpu0 = d.cpu()
        t0 = time.monotonic()
        answer = subprocess.run([*cronsup_argv(), "run", "head", "--jobs", d.jobs, "--db", d.db],
                                capture_output=True, text=True, timeout=60)
        if answer.returncode != 0:
            raise SystemExit(f"cronsup run failed: {answer.stderr or answer.stdout}")
        conn = d.reader()
        status = "running"
        while status == "running" and time.monotonic() - t0 < 600:
            time.sleep(0.05)
            row = conn.execute("SELECT id, status, started_at, finished_at FROM runs "
                               "ORDER BY id DESC LIMIT 1").fetchone()
            if row is not None:
                run_id, status, started, finished = row
        t1 = time.monotonic()
        stop.set()
        sampler.join()
        cpu = d.cpu() - cpu0
        end = d.status_kb()
        stored = conn.execute("SELECT length(data), truncated FROM outputs WHERE run_id = ?",
                              (run_id,)).fetchone()
        conn.close()
        peak = max(samples)
        return {"workload": "output", "bytes": size, "other_jobs": others, "status": status,
                "flood_s": (finished - started) if finished and started else t1 - t0,
                "mb_per_s": size / 1e6 / max(1e-9, (finished - started) if finished and started else t1 - t0),
                "rss_kb_before": base["VmRSS"], "rss_kb_peak": peak, "growth_mb": (peak - base["VmRSS"]) / 1024,
                "hwm_growth_mb": (end["VmHWM"] - base["VmHWM"]) / 1024, "samples": len(samples),
                "daemon_cpu_s": cpu, "stored_bytes": stored[0] if stored else None,
                "stored_truncated": bool(stored[1]) if stored else None}
    finally:
        d.close()


# -- output ----------------------------------------------------------------------------------


def show(r: dict) -> str:
    f = lambda x, d=3: "-" if x is None else (f"{x:.{d}f}" if isinstance(x, float) else str(x))
    w = r["workload"]
    if w == "fire":
        head = (f"fire    n={r['n']:<5} recv={r['received']}/{r['expected']} first={f(r['first_s'])}s "
                f"p50={f(r['p50_s'])}s p99={f(r['p99_s'])}s last={f(r['last_s'])}s (medians over "
                f"{r['minutes']} boundaries; worst last={f(r['max_last_s'])}s, p99 of all lags="
                f"{f(r['all_lags_p99_s'])}s) cpu={f(r['daemon_cpu_s'], 2)}s rss={r['rss_kb']}KB")
        rows = [f"        {b['boundary']}: n={b['count']} first={f(b['first_s'])} p50={f(b['p50_s'])} "
                f"p99={f(b['p99_s'])} last={f(b['last_s'])}  run log started_at: p50="
                f"{f(b['runlog_started_p50_s'])} last={f(b['runlog_started_last_s'])}"
                for b in r["per_boundary"]]
        return "\n".join([head, *rows])
    if w == "idle":
        th = "; ".join(f"{k}: {v['wakeups']} wake-ups ({v['wakeups_per_min']}/min) {v['cpu_s']}s"
                       for k, v in r["threads"].items())
        return (f"idle    n={r['n']:<5} cpu={f(r['cpu_s'], 2)}s over {r['window_s']}s "
                f"({f(r['cpu_pct'])}%) rss={r['rss_kb']}KB hwm={r['hwm_kb']}KB\n        {th}")
    if w == "reload":
        return (f"reload  n={r['n']:<5} new job scheduled after {f(r['scheduled_s'])}s (median of "
                f"{r['repeats']}, max {f(r['max_s'])}s) cpu={f(r['cpu_s'], 2)}s "
                f"rss={r['rss_kb']}KB; cold start to {r['n']} jobs listed: {f(r['startup_listed_s'])}s")
    if w == "output":
        return (f"output  {r['bytes']} bytes, {r['other_jobs']} other jobs loaded: {r['status']} in {f(r['flood_s'], 2)}s "
                f"({f(r['mb_per_s'], 0)} MB/s), daemon RSS {r['rss_kb_before']}KB -> peak "
                f"{r['rss_kb_peak']}KB (growth {f(r['growth_mb'], 1)} MB, HWM growth "
                f"{f(r['hwm_growth_mb'], 1)} MB, {r['samples']} samples), cpu={f(r['daemon_cpu_s'], 2)}s, "
                f"stored {r['stored_bytes']} bytes truncated={r['stored_truncated']}")
    return json.dumps(r)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workloads", nargs="*", default=["all"], help="fire idle reload output, or all")
    ap.add_argument("--fire-n", default="1,1000", help="job counts for fire, comma separated")
    ap.add_argument("--minutes", type=int, default=2, help="minute boundaries per fire run")
    ap.add_argument("--lead", type=float, default=12.0, help="fire: start the daemon this long before :00")
    ap.add_argument("--idle-n", type=int, default=1000)
    ap.add_argument("--idle-seconds", type=float, default=120.0)
    ap.add_argument("--reload-n", type=int, default=10000)
    ap.add_argument("--repeats", type=int, default=3, help="reload edits")
    ap.add_argument("--reload-timeout", type=float, default=30.0)
    ap.add_argument("--output-bytes", type=int, default=1 << 30)
    ap.add_argument("--output-jobs", type=int, default=0, help="output: idle jobs loaded beside the flooding one")
    ap.add_argument("--cronsup", help="command that runs cronsup (default: the venv's cronsup script); e.g. "
                    "'env PYTHONPATH=/tmp/old .venv/bin/python -m cronsup' to measure another checkout")
    ap.add_argument("--json", help="append each result as a JSON line to this file")
    ap.add_argument("--keep", action="store_true", help="keep the temp dirs")
    a = ap.parse_args()
    wanted = a.workloads
    if a.cronsup:
        CRONSUP[:] = a.cronsup.split()
    if "all" in wanted:
        wanted = ["idle", "reload", "output", "fire"]

    def on_signal(signum, frame):
        raise KeyboardInterrupt  # unwinds through each workload's finally: daemon stopped, dir removed

    signal.signal(signal.SIGTERM, on_signal)
    os.chdir(REPO)
    for w in wanted:
        if w == "fire":
            results = [w_fire(int(n), a.minutes, a.lead, a.keep) for n in a.fire_n.split(",") if n]
        elif w == "idle":
            results = [w_idle(a.idle_n, a.idle_seconds, a.keep)]
        elif w == "reload":
            results = [w_reload(a.reload_n, a.repeats, a.reload_timeout, a.keep)]
        elif w == "output":
            results = [w_output(a.output_bytes, a.output_jobs, a.keep)]
        else:
            raise SystemExit(f"unknown workload {w!r}: fire, idle, reload, output or all")
        for r in results:
            r["at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
            r["cronsup"] = " ".join(cronsup_argv())
            r["loadavg"] = os.getloadavg()
            print(show(r), flush=True)
            if a.json:
                with open(a.json, "a") as f:
                    f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
