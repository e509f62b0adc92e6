"""Several daemons sharing one PostgreSQL run log (SPEC section 9), against a real throwaway
server: every fire once, a dead or stopped host's runs taken over, a cut connection, a skewed
clock (the soak, the server stopped for 30 s and the alert resent are in
test_several_hosts_long.py)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path

import psycopg
import pytest
from conftest import free_port, wait_until
from pgcluster import pg_cluster, pg_url  # noqa: F401 (fixtures)

from cronsup import control
from test_alerts import job_block, receiver  # noqa: F401 (the receiver fixture)


class Node:
    """`cronsup daemon --db postgresql://... --node NAME --state-dir DIR` in a temp dir."""

    def __init__(self, tmp: Path, name: str, url: str, jobs: Path, env: dict[str, str] | None = None):
        self.name, self.url, self.jobs = name, url, jobs
        self.state = tmp / f"state-{name}"
        self.log_path = tmp / f"daemon-{name}.log"
        self.env = dict(os.environ, CRONSUP_SENDMAIL="/bin/true", **(env or {}))
        self.proc: subprocess.Popen | None = None
        self.daemon_args: list[str] = []  # for `daemon` only (e.g. --metrics)

    def args(self) -> list[str]:
        return ["--jobs", str(self.jobs), "--db", self.url, "--node", self.name, "--state-dir", str(self.state)]

    def start(self, wait: bool = True) -> Node:
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "cronsup", "daemon", *self.args(), *self.daemon_args],
                                     stdout=self._log, stderr=subprocess.STDOUT, env=self.env)
        if wait:
            wait_until(self.ready, 30, what=f"node {self.name} to start")
        return self

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"node {self.name} exited {self.proc.returncode}:\n{self.output()}")
        try:
            return control.request(str(self.state / "cronsup.sock"), "ping", timeout=2)["pid"] == self.proc.pid
        except control.ControlError:
            return False

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            if sig == signal.SIGSTOP:
                return
            self.proc.wait(60)

    def cli(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "cronsup", *args, *self.args()], capture_output=True,
                              text=True, timeout=60, env=dict(self.env, **(env or {})))


def rows(url: str, sql: str = "SELECT job, scheduled_for, attempt, host, status, reason, id FROM runs ORDER BY id"):
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()


@pytest.fixture
def nodes(tmp_path, pg_url):
    made: list[Node] = []

    def make(name: str, jobs_text: str, env: dict[str, str] | None = None, url: str | None = None) -> Node:
        jobs = tmp_path / f"jobs-{name}"
        jobs.write_text(textwrap.dedent(jobs_text))
        node = Node(tmp_path, name, url or pg_url, jobs, env)
        made.append(node)
        return node

    yield make
    for node in made:
        if node.proc and node.proc.poll() is None:
            node.proc.send_signal(signal.SIGCONT)
            node.proc.kill()
            node.proc.wait(30)


def _no_fire_twice(url: str) -> list:
    """(job, scheduled time) pairs that ran more than once (over attempts too)."""
    ran = rows(url, "SELECT job, scheduled_for, node_key, count(*) FROM runs WHERE status IN "
                    "('success', 'failed', 'running') GROUP BY 1, 2, 3 HAVING count(*) > 1")
    return ran


def test_three_daemons_run_every_fire_of_a_hundred_jobs_exactly_once(nodes, pg_url, tmp_path):
    out = tmp_path / "ran"
    jobs = "MAILTO=\"\"\n" + "".join(
        f"[job.j{i:03d}]\n@every 2s echo $CRONSUP_RUN_ID >> {out}\n" for i in range(100))
    # Every minute, with the database's clock (which every host follows) moved so that a
    # minute starts during the test.
    offset = 60 - time.time() % 60 - 8 + 60
    jobs += f"[job.minutely]\n* * * * * echo $CRONSUP_RUN_ID >> {out}\n"
    dbname = pg_url.split("/")[3].split("?")[0]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"ALTER DATABASE \"{dbname}\" SET cronsup.test_clock_offset = '{offset}'")
    three = [nodes(n, jobs) for n in ("a", "b", "c")]
    for node in three:
        node.start(wait=False)
    for node in three:
        wait_until(node.ready, 30, what=f"node {node.name}")
    started = rows(pg_url, "SELECT extract(epoch from now())::float8")[0][0] + offset
    wait_until(lambda: rows(pg_url, "SELECT count(*) FROM runs WHERE job = 'minutely'")[0][0] >= 1, 30,
               what="the minutely job's fire")
    time.sleep(4)  # a few more fires of every @every job (no condition to wait for)
    for node in three:
        node.proc.send_signal(signal.SIGTERM)
    for node in three:
        node.stop()
    found = rows(pg_url)
    assert _no_fire_twice(pg_url) == []
    by_job: dict[str, list[float]] = {}
    for job, t, attempt, host, status, reason, run_id in found:
        # Killed by the stop at the end; or skipped (overlap = "skip" across hosts) because the
        # fire before was still recorded running on another host, its end not yet written.
        assert status == "success" or (status, reason) == ("killed", "stopped with the daemon") or (
            status == "skipped" and reason.startswith("still running on ")), (job, t, host, status, reason)
        by_job.setdefault(job, []).append(t)
    assert len(by_job) == 101
    assert sum(r[4] == "success" for r in found) > len(found) / 2
    for job, times in by_job.items():
        if job == "minutely":
            assert len(times) == 1 and times[0] % 60 == 0
            continue
        times.sort()
        assert all(t % 2 == 0 for t in times)
        # None missing: every multiple of 2 between the first and the last fire ran.
        assert times == [times[0] + 2 * k for k in range(len(times))], job
        assert times[0] <= started + 4
    assert set(Counter(r[3] for r in found)) == {"a", "b", "c"}
    # Every run that ran was recorded, and every recorded run ran, once.
    ran = [int(x) for x in out.read_text().split()]
    assert len(ran) == len(set(ran)) and set(ran) <= {r[6] for r in found}
    assert {r[6] for r in found if r[4] == "success"} <= set(ran)
    assert all("this host's clock" in n.output() for n in three)  # the moved database clock


def _long_job(lease: str, on_lost: str) -> str:
    return f"""\
        MAILTO=""
        [job.long]
        lease = "{lease}"
        on_lost = "{on_lost}"
        0 0 29 2 * sleep 20
        """  # run by hand only (an hourly job would fire at the hour's turn, on every host's clock)


def _run_on(node: Node, job: str) -> int:
    done = node.cli("run", job)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split("started run ")[1].split()[0])


def test_kill_9_of_the_host_running_a_long_job_loses_the_run_and_another_host_runs_it_again(nodes, pg_url):
    a, b, c = (nodes(n, _long_job("2s", "retry")).start() for n in ("a", "b", "c"))
    run_id = _run_on(a, "long")
    [(pid,)] = rows(pg_url, f"SELECT pid FROM runs WHERE id = {run_id} AND pid IS NOT NULL") or [(None,)]
    killed_at = time.monotonic()
    a.stop(signal.SIGKILL)  # the host dies: its job with it
    if pid:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    lost = wait_until(lambda: rows(pg_url, f"SELECT status, reason FROM runs WHERE id = {run_id} "
                                           "AND status = 'lost'"), 20, what="the run to be lost")
    took = time.monotonic() - killed_at
    assert "heartbeating" in lost[0][1]
    assert took < 2 + 2 / 3 + 2 + 4, took  # lease, grace, a heartbeat's period, slack for the load
    again = wait_until(lambda: rows(pg_url, "SELECT host, attempt, trigger, status FROM runs "
                                            f"WHERE job = 'long' AND id > {run_id}"), 20,
                       what="the run again on another host")
    assert len(again) == 1
    host, attempt, trigger, status = again[0]
    assert host in ("b", "c") and attempt == 2 and trigger == "retry" and status == "running"


def test_a_host_stopped_past_its_lease_records_nothing_over_the_cluster_and_claims_again_later(nodes, pg_url):
    a, b = (nodes(n, _long_job("2s", "mark").replace("sleep 20", "sleep 5")).start() for n in ("a", "b"))
    run_id = _run_on(a, "long")
    a.stop(signal.SIGSTOP)
    wait_until(lambda: rows(pg_url, f"SELECT 1 FROM runs WHERE id = {run_id} AND status = 'lost'"), 20,
               what="the stopped host's run to be lost")
    time.sleep(0.5)
    a.proc.send_signal(signal.SIGCONT)
    # Back, it learns at its next heartbeat that the run is not its own any more.
    wait_until(lambda: "the cluster marked it lost" in a.output(), 20, what="node a to notice")
    [(status, reason)] = rows(pg_url, f"SELECT status, reason FROM runs WHERE id = {run_id}")
    assert status == "lost" and "heartbeating" in reason
    assert rows(pg_url, "SELECT count(*) FROM runs")[0][0] == 1  # on_lost = "mark": not run again
    # It heartbeats again and takes work: a manual run through it starts.
    second = _run_on(a, "long")
    assert rows(pg_url, f"SELECT host, status FROM runs WHERE id = {second}") == [("a", "running")]


class Proxy:
    """A TCP proxy to the server that can pause (hold every byte) and drop every connection."""

    def __init__(self, target_port: int):
        self.target = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.paused = threading.Event()
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()
                continue
            with self.lock:
                self.conns += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                while self.paused.is_set():
                    time.sleep(0.05)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def drop(self) -> None:
        with self.lock:
            conns, self.conns = self.conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass


def _every_second_jobs(out: Path, n: int = 10, only: str | None = None) -> str:
    """n jobs every second; with `only`, the first half may run on that node alone."""
    return "MAILTO=\"\"\n" + "".join(
        f"[job.e{i}]\nlease = \"3s\"\n" + (f"hosts = [\"{only}\"]\n" if only and i < n // 2 else "")
        + f"@every 1s echo $CRONSUP_RUN_ID >> {out}\n" for i in range(n))


def test_a_connection_paused_and_dropped_by_a_proxy_gives_no_duplicate_and_no_unrecorded_run(
        nodes, pg_url, pg_cluster, tmp_path):
    out = tmp_path / "ran"
    proxy = Proxy(pg_cluster.port)
    dbname = pg_url.split("/")[3].split("?")[0]
    # Half the jobs may run on a alone: a, through the proxy, has work whoever is faster.
    a = nodes("a", _every_second_jobs(out, only="a"), url=pg_cluster.url(dbname, port=proxy.port)).start()
    b = nodes("b", _every_second_jobs(out, only="a")).start()
    time.sleep(2)
    proxy.paused.set()  # a's calls get no answer
    time.sleep(2.5)
    proxy.drop()
    proxy.paused.clear()
    time.sleep(3)  # a reconnects and claims again
    proxy.drop()  # dropped while idle or mid-call
    time.sleep(2)
    a.stop()
    b.stop()
    found = rows(pg_url)
    assert _no_fire_twice(pg_url) == []
    ran = [int(x) for x in out.read_text().split()]
    assert len(ran) == len(set(ran))
    # A run still going at the stop (on a loaded machine) is recorded killed, with the daemon.
    recorded_ran = {r[6] for r in found if r[4] in ("success", "failed", "lost", "killed")}
    assert set(ran) <= recorded_ran, [r for r in found if r[6] in set(ran) - recorded_ran]
    assert all(r[4] != "running" for r in found)
    assert {r[3] for r in found if r[4] == "success"} == {"a", "b"}
    assert {r[3] for r in found if r[0] in ("e0", "e1", "e2", "e3", "e4")} == {"a"}
    assert "heartbeat again" in a.output()  # it lost the database and found it again


def test_a_host_whose_clock_is_five_minutes_off_runs_nothing_twice(nodes, pg_url, tmp_path):
    out = tmp_path / "ran"
    # Two jobs each host alone may run, and two both race for: whichever wins a race, the
    # skewed host and the other both run, and no fire runs twice.
    jobs = "MAILTO=\"\"\n" + "".join(
        f"[job.e{i}]\nlease = \"3s\"\n" + (f"hosts = [\"{only}\"]\n" if only else "")
        + f"@every 1s echo $CRONSUP_RUN_ID >> {out}\n"
        for i, only in enumerate(["a", "a", "b", "b", None, None]))
    a = nodes("a", jobs, env={"CRONSUP_TEST_CLOCK_OFFSET": "300"}).start()
    b = nodes("b", jobs).start()
    wait_until(lambda: {r[3] for r in rows(pg_url)} == {"a", "b"}
               and len({r[0] for r in rows(pg_url)}) == 6, 30, interval=0.2,
               what="runs of every job, on both hosts")
    time.sleep(2)  # a few more fires for both to race over
    a.stop()
    b.stop()
    assert "this host's clock is -300" in a.output() or "this host's clock is +300" in a.output()
    assert _no_fire_twice(pg_url) == []
    found = rows(pg_url)
    hosts = {r[3] for r in found}
    assert hosts == {"a", "b"}
    now = rows(pg_url, "SELECT extract(epoch from now())::float8")[0][0]
    assert all(abs(r[1] - now) < 60 for r in found)  # scheduled by the database's clock


def test_a_pause_through_one_host_pauses_the_job_on_every_host_and_run_goes_through_the_store(
        nodes, pg_url, tmp_path):
    out = tmp_path / "ran"
    jobs = f'MAILTO=""\n[job.tick]\nlease = "3s"\n@every 1s echo $CRONSUP_RUN_ID >> {out}\n'
    a, b = nodes("a", jobs).start(), nodes("b", jobs).start()
    wait_until(lambda: rows(pg_url, "SELECT 1 FROM runs"), 15, what="a first run")
    assert a.cli("pause", "tick").returncode == 0
    # b learns of it at its next heartbeat (lease/3 = 1s); after that nothing is claimed.
    wait_until(lambda: "tick: paused (through another host)" in b.output(), 15, what="b to follow")
    time.sleep(0.5)
    count = rows(pg_url, "SELECT count(*) FROM runs")[0][0]
    time.sleep(2.5)
    assert rows(pg_url, "SELECT count(*) FROM runs")[0][0] == count
    # `cronsup run` on a machine with no daemon: the request goes through the store.
    elsewhere = Node(tmp_path, "elsewhere", pg_url, a.jobs)
    done = elsewhere.cli("run", "tick", "--wait")
    assert done.returncode == 0, done.stderr + done.stdout
    assert "started run" in done.stdout and "success" in done.stdout
    [(host, trigger)] = rows(pg_url, "SELECT host, trigger FROM runs WHERE trigger = 'manual'")
    assert host in ("a", "b")


def test_a_host_scoped_job_runs_on_every_host_and_a_job_defined_differently_is_not_claimed_there(
        nodes, pg_url):
    same = ('MAILTO=""\n[job.rotate]\nscope = "host"\nlease = "3s"\n@every 1s true\n'
            '[job.only_b]\nhosts = ["b"]\n@every 1s true\n[job.shared]\nlease = "3s"\n')
    a = nodes("a", same + "@every 1s true\n").start()
    b = nodes("b", same + "@every 1s true\n").start()
    c = nodes("c", same + "@every 1s echo changed\n").start()
    wait_until(lambda: "shared: this host's definition differs" in c.output(), 20, what="c to see it differs")
    since = rows(pg_url, "SELECT coalesce(max(id), 0) FROM runs")[0][0]
    wait_until(lambda: len({r[1] for r in rows(pg_url) if r[0] == "rotate" and r[6] > since
                            and r[4] == "success"}) >= 3, 20, what="a few rotate fires")
    listed = json.loads(a.cli("nodes", "--json").stdout)["nodes"]
    for node in (a, b, c):
        node.proc.send_signal(signal.SIGTERM)
    for node in (a, b, c):
        node.stop()
    later = [r for r in rows(pg_url) if r[6] > since and r[4] == "success"]
    assert {r[3] for r in later if r[0] == "shared"} <= {"a", "b"} and any(r[0] == "shared" for r in later)
    per_time = Counter(r[1] for r in later if r[0] == "rotate")
    assert max(per_time.values()) == 3 and {r[3] for r in later if r[0] == "rotate"} == {"a", "b", "c"}
    assert {r[3] for r in later if r[0] == "only_b"} == {"b"}
    assert {n["node"]: n["differs"] for n in listed} == {"a": [], "b": [], "c": ["shared"]}
    assert all(n["state"] == "up" and n["version"] for n in listed)


def test_a_restarted_host_recovers_its_own_runs_at_once_without_waiting_for_their_lease(nodes, pg_url):
    a = nodes("a", _long_job("30s", "mark")).start()
    b = nodes("b", _long_job("30s", "mark")).start()
    run_id = _run_on(a, "long")
    a.stop(signal.SIGKILL)  # its `sleep 20` lives on, leased for 30 s more
    a.start()
    [(status, reason)] = rows(pg_url, f"SELECT status, reason FROM runs WHERE id = {run_id}")
    assert status == "lost" and "killed when the daemon restarted" in reason
    assert b.proc.poll() is None


def _runs_totals(exposition: str) -> dict[tuple[str, str], float]:
    from prometheus_client.parser import text_string_to_metric_families

    return {(s.labels["job"], s.labels["status"]): s.value
            for family in text_string_to_metric_families(exposition) for s in family.samples
            if s.name == "cronsup_job_runs_total"}


def test_metrics_of_a_postgresql_run_log_count_the_runs_of_every_host_live_and_from_the_cli(nodes, pg_url):
    import urllib.request

    jobs = 'MAILTO=""\n[job.tick]\nlease = "3s"\n@every 1s true\n[job.fails]\n@every 1s false\n'
    a, b = nodes("a", jobs), nodes("b", jobs)
    port = free_port()
    a.daemon_args = ["--metrics", f"127.0.0.1:{port}"]
    a.start(), b.start()
    wait_until(lambda: rows(pg_url, "SELECT count(DISTINCT host) FROM runs WHERE status = 'success'")[0][0] == 2
               and rows(pg_url, "SELECT count(*) FROM runs WHERE status = 'failed'")[0][0] >= 2, 30,
               what="finished runs on both hosts")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        live = _runs_totals(answer.read().decode())
    assert live[("tick", "success")] >= 2 and live[("fails", "failed")] >= 2
    a.stop(), b.stop()
    # With no daemon: `cronsup metrics` reads the same counters, the cluster's (both hosts' runs).
    done = a.cli("metrics")
    assert done.returncode == 0, done.stderr
    found = _runs_totals(done.stdout)
    ended = rows(pg_url, "SELECT job, status, count(*) FROM runs WHERE status != 'running' GROUP BY 1, 2")
    assert {(job, status): n for job, status, n in ended} == {k: v for k, v in found.items() if v}
    assert all(found[k] >= v for k, v in live.items())
    assert 'cronsup_job_last_exit_code{job="fails"} 1' in done.stdout


def test_a_backfill_through_a_postgresql_daemon_runs_each_time_once_and_survives_a_restart(nodes, pg_url):
    jobs = 'MAILTO=""\n[job.slow]\ntimezone = "UTC"\n0 * * * * sleep 0.3\n'
    a = nodes("a", jobs).start()
    started = a.cli("backfill", "slow", "--from", "2026-11-29T00:00", "--to", "2026-11-29T12:00",
                    "--max-parallel", "2")
    assert started.returncode == 0, started.stderr + started.stdout
    wait_until(lambda: rows(pg_url, "SELECT count(*) FROM runs WHERE status = 'success'")[0][0] >= 3, 30,
               what="three slots done")
    a.stop()
    a.start()  # goes on from the slots recorded in the store
    wait_until(lambda: rows(pg_url, "SELECT state FROM backfills")[0][0] == "done", 30, what="the backfill's end")
    found = rows(pg_url, "SELECT scheduled_for, status FROM runs WHERE trigger = 'backfill' ORDER BY scheduled_for")
    times = [t for t, _ in found]
    assert len(times) == len(set(times)) == 12
    # Every slot has its run; only the runs the stop interrupted (2 at once) may have failed.
    assert rows(pg_url, "SELECT count(*) FROM backfill_slots WHERE run_id IS NULL")[0][0] == 0
    assert [s for _, s in found if s != "success"] in ([], ["killed"], ["killed", "killed"])
    assert rows(pg_url, "SELECT count(*) FROM runs WHERE status = 'skipped'")[0][0] == 0  # its own runs are no overlap


def test_the_web_view_of_a_postgresql_run_log_shows_both_hosts_runs_and_whether_a_node_runs(nodes, pg_url):
    from webserver import WebServer

    jobs = ('MAILTO=""\n[job.tick]\nscope = "host"\nlease = "3s"\n@every 1s echo tick $CRONSUP_RUN_ID\n'
            '[job.fails]\nlease = "3s"\n@every 1s echo broken; false\n')
    a, b = nodes("a", jobs).start(), nodes("b", jobs).start()
    wait_until(lambda: rows(pg_url, "SELECT count(DISTINCT host) FROM runs WHERE job = 'tick' AND status = 'success'")[0][0] == 2
               and rows(pg_url, "SELECT count(*) FROM runs WHERE status = 'failed'")[0][0] >= 1, 30,
               what="runs on both hosts and a failure")
    web = WebServer(a.jobs, pg_url, env=dict(os.environ, CRONSUP_NODE="viewer"))
    try:
        overview = web.json("/api/overview")
        assert overview["daemon"]["running"] and overview["daemon"]["nodes_up"] == ["a", "b"]
        assert overview["daemon"]["node"] == "a" and overview["daemon"]["pid"] == a.proc.pid  # the first up by name
        assert {j["name"] for j in overview["jobs"]} == {"tick", "fails"}
        page = web.html("/")
        assert "nodes up: a, b" in page and f"on node <b>{overview['daemon']['node']}</b>" in page
        tick = web.json("/api/jobs/tick")
        assert {r["host"] for r in tick["runs"] if r["status"] == "success"} == {"a", "b"}
        done = next(r for r in tick["runs"] if r["status"] == "success" and r["host"] == "b")
        run = web.json(f"/api/runs/{done['id']}")
        assert run["host"] == "b" and run["job"] == "tick"
        page = web.html(f"/runs/{done['id']}")
        assert "<th>host</th><td>b</td>" in page and f"tick {done['id']}" in page
        part = web.json(f"/api/runs/{done['id']}/output?offset=0")
        assert part["size"] == len(f"tick {done['id']}\n") and part["done"]
        failed = web.json("/api/failures")["runs"]
        assert failed and {r["job"] for r in failed} == {"fails"} and {r["host"] for r in failed} <= {"a", "b"}
        assert 'href="/jobs/fails"' in web.html("/failures")
        assert {r["id"] for r in failed} <= {r["id"] for r in web.json("/api/jobs/fails?status=failed")["runs"]}
        mine = WebServer(a.jobs, pg_url, "--node", "b")  # on a node's own host: that node
        try:
            assert mine.json("/api/overview")["daemon"]["pid"] == b.proc.pid
        finally:
            mine.stop()
        a.stop(), b.stop()
        stopped = web.json("/api/overview")["daemon"]
        assert not stopped["running"] and stopped["pid"] is None and stopped["nodes_up"] == []
        assert "daemon not running" in web.html("/")
    finally:
        web.stop()


def test_the_web_view_names_a_postgresql_run_log_it_cannot_reach_without_a_traceback(pg_cluster, tmp_path):
    jobs = tmp_path / "jobs"
    jobs.write_text("@every 1m true\n")
    for url, says in ((pg_cluster.url("no_such_db"), 'database "no_such_db" does not exist'),
                      (f"postgresql://cronsup_test:secret@127.0.0.1:{free_port()}/x", "Connection refused")):
        done = subprocess.run([sys.executable, "-m", "cronsup", "web", "--listen", "127.0.0.1:0", "--jobs",
                               str(jobs), "--db", url], capture_output=True, text=True, timeout=60)
        assert done.returncode == 1 and says in done.stderr, done.stderr
        assert "Traceback" not in done.stderr and "secret" not in done.stderr

def test_two_hosts_sharing_the_outbox_deliver_each_alert_once_and_either_shows_the_attempt(
        nodes, pg_url, receiver):
    # A job on both hosts alerts at every success: both senders wake each second and race for
    # the outbox they share (with the exhausted job's failure in it), each delivery taking
    # a while.
    receiver.delay = 0.5
    jobs = 'MAILTO=""\n' + job_block("backup", "echo disk full; exit 7", retries=1, retry_delay="100ms",
                                     retry_jitter=False, webhook=receiver.url()) + \
        job_block("tick", "true", schedule="@every 1s", webhook=receiver.url("tick"), notify_on=["success"])
    a, b = nodes("a", jobs).start(wait=False), nodes("b", jobs).start(wait=False)
    for node in (a, b):
        wait_until(node.ready, 30, what=f"node {node.name}")
    assert a.cli("run", "backup").returncode == 0
    wait_until(lambda: receiver.events(), 30, what="the failure event")
    wait_until(lambda: len({e["host"] for e in receiver.events("tick")}) == 2 and
               len(receiver.events("tick")) >= 6, 40, what="alerts of runs on both hosts")
    [(run_id,)] = rows(pg_url, "SELECT id FROM runs WHERE job = 'backup' AND attempt = 2")
    for node in (a, b):  # either host shows the delivery, from the shared outbox
        shown = wait_until(lambda: (d := json.loads(node.cli("logs", "backup", "--run", str(run_id), "--json")
                                                     .stdout))["alerts"][0]["state"] == "delivered" and d,
                           15, what=f"the delivery recorded, seen from {node.name}")
        [alert] = shown["alerts"]
        assert [at["answer"] for at in alert["attempts"]] == ["200 OK"] and alert["event"] == "failure"
        text = node.cli("logs", "backup", "--run", str(run_id)).stdout
        assert f"failure to webhook {receiver.base}: delivered" in text and "200 OK" in text
    a.stop(), b.stop()
    failures = receiver.events()
    assert len(failures) == 1 and failures[0]["event"] == "failure" and failures[0]["run"]["id"] == run_id
    assert failures[0]["run"]["attempt"] == 2 and failures[0]["output_tail"] == "disk full\n"
    ticks = Counter(e["run"]["id"] for e in receiver.events("tick"))
    assert ticks and max(ticks.values()) == 1, ticks  # each alert once, whichever host sent it
    # One webhook-id per alert whichever host sent it: the cluster's mark, not a host's.
    [(mark,)] = rows(pg_url, "SELECT mark FROM alerts_mark")
    assert {r.headers["webhook-id"].rsplit("_", 1)[0] for r in receiver.requests} == {f"msg_{mark}"}
    # Every delivery recorded once: one attempt per alert.
    assert rows(pg_url, "SELECT outbox_id FROM outbox_attempts GROUP BY 1 HAVING count(*) > 1") == []
