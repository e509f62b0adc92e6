"""Alerts under a burst: N jobs failing at the same minute, each with a webhook to a local receiver.

    .venv/bin/python bench/bench_alerts.py [--n 1000] [--minutes 2] [--rounds 1]

Per round, two daemons one after the other in this session: `plain` (the same N failing jobs,
no webhook) and `webhook` (each job with its own webhook URL to a threading http.server in
this process). Jobs are `* * * * *` running bench_daemon's stamp program (its start time to
a file) and then `exit 1`, so every run is a final failure and sends one `failure` event.
Reported per variant: the burst's start lags (median over the minute boundaries of the
first, p50 and last stamp), and for `webhook` the events received (expected N per boundary),
the time from each boundary to its last delivered event, and the outbox left pending.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import signal
import sqlite3
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_daemon import EVERY, REPO, Daemon, log, pct, stamp_program  # noqa: E402


class Receiver:
    def __init__(self):
        self.events: list[tuple[float, dict]] = []
        lock = threading.Lock()
        events = self.events

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with lock:
                    events.append((time.time(), json.loads(body)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook/{i}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def burst(n: int, minutes: int, lead: float, receiver: Receiver | None) -> dict:
    variant = "webhook" if receiver else "plain"
    d = Daemon(f"alerts-{variant}")
    try:
        stamp = stamp_program(d.work)
        out = os.path.join(d.work, "stamps.txt")
        lines = []
        for i in range(n):
            lines.append(f"[job.j{i}]")
            if receiver:
                lines.append(f'webhook = "{receiver.url(i)}"')
            lines.append(f"{EVERY} {stamp} {out} {i}; exit 1")
        d.write_jobs(lines)
        left = 60 - time.time() % 60
        if left < lead:
            time.sleep(left + 0.05)
        left = 60 - time.time() % 60
        if left > lead:
            time.sleep(left - lead)
        d.start()
        b0 = (int(time.time()) // 60 + 1) * 60
        bounds = [b0 + 60 * k for k in range(minutes)]
        log(f"{variant} n={n}: daemon {d.proc.pid} up, boundaries at :00 for {minutes} min")
        d.wait_loaded(n)
        if receiver:
            receiver.events.clear()  # start-up's run of the minute just gone is left out
        time.sleep(max(0.0, b0 - 1 - time.time()))
        if receiver:
            receiver.events.clear()
        while time.time() < bounds[-1] + 58:
            time.sleep(0.5)
            if not d.alive():
                raise SystemExit(f"daemon exited ({d.proc.returncode}); see {d.work}/daemon.out")
            if time.time() > bounds[-1] + 1 and os.path.exists(out):
                with open(out) as f:
                    count = sum(1 for line in f if float(line.split()[0]) >= bounds[-1] - 1)
                if count >= n and (not receiver or _delivered(receiver, bounds) >= n * minutes):
                    break
        with open(out) as f:
            stamps = [float(line.split()[0]) for line in f]
        rows = []
        for b in bounds:
            lags = [t - b for t in stamps if b - 1 <= t < b + 59]
            row = {"count": len(lags), "first_s": min(lags, default=float("nan")), "p50_s": pct(lags, 50),
                   "last_s": max(lags, default=float("nan"))}
            if receiver:
                got = [t for t, e in receiver.events if _fire(e) == b]
                row["events"] = len(got)
                row["first_event_s"] = min(got, default=b) - b
                row["last_event_s"] = max(got, default=b) - b
            rows.append(row)
        pending = None
        if receiver:
            conn = sqlite3.connect(f"file:{d.db}?mode=ro", uri=True)
            pending = conn.execute("SELECT count(*) FROM outbox WHERE state = 'pending'").fetchone()[0]
            conn.close()
        med = lambda k: statistics.median(r[k] for r in rows)
        result = {"variant": variant, "n": n, "minutes": minutes, "first_s": med("first_s"),
                  "p50_s": med("p50_s"), "last_s": med("last_s"), "max_last_s": max(r["last_s"] for r in rows),
                  "per_boundary": rows, "pending": pending, "cpu_s": d.cpu()}
        return result
    finally:
        d.close()


def _fire(event: dict) -> float | None:
    from datetime import datetime

    run = event.get("run") or {}
    return datetime.fromisoformat(run["scheduled_for"]).timestamp() if run.get("scheduled_for") else None


def _delivered(receiver: Receiver, bounds: list[float]) -> int:
    return sum(1 for _, e in list(receiver.events) if _fire(e) in bounds)


def show(r: dict) -> str:
    rows = "; ".join(
        f"n={b['count']} last={b['last_s']:.3f}s" + (f" events={b['events']} from +{b['first_event_s']:.2f}s to +{b['last_event_s']:.2f}s"
                                                    if "events" in b else "")
        for b in r["per_boundary"])
    pending = "" if r["pending"] is None else f" outbox pending={r['pending']}"
    return (f"{r['variant']:<8} n={r['n']} first={r['first_s']:.3f}s p50={r['p50_s']:.3f}s "
            f"last={r['last_s']:.3f}s (medians over {r['minutes']} boundaries; worst last "
            f"{r['max_last_s']:.3f}s) cpu={r['cpu_s']:.1f}s{pending}\n         {rows}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--minutes", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--lead", type=float, default=12.0)
    ap.add_argument("--json", help="append each result as a JSON line to this file")
    a = ap.parse_args()

    def on_signal(signum, frame):
        raise KeyboardInterrupt  # unwinds through burst's finally: daemon stopped, dir removed

    signal.signal(signal.SIGTERM, on_signal)
    os.chdir(REPO)
    receiver = Receiver()
    try:
        for k in range(a.rounds):
            order = [None, receiver] if k % 2 == 0 else [receiver, None]
            for rec in order:
                r = burst(a.n, a.minutes, a.lead, rec)
                r["at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
                r["loadavg"] = os.getloadavg()
                print(show(r), flush=True)
                if a.json:
                    with open(a.json, "a") as f:
                        f.write(json.dumps(r) + "\n")
    finally:
        receiver.close()


if __name__ == "__main__":
    main()
