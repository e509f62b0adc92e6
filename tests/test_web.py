"""`cronsup web` without a browser: the JSON twins, escaping, headers and auth, on a real uvicorn."""

from __future__ import annotations

import hashlib
import html as htmllib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
from conftest import nobody_cannot_run_cronsup
from webserver import WebServer

from cronsup.model import RunStatus, Trigger
from cronsup.store import DaemonState, DeliveryAttempt, NewRun, OutboxItem, open_store

NOW = time.time()
XSS_DESC = 'Evil <script>alert("d")</script> "><img src=x onerror=alert(1)>'
XSS_OUT = (b'<script>alert("out")</script>\n"><img src=x onerror=alert(2)>\n'
           b"\x1b[1;31mred bold\x1b[0m plain \x1b[38;5;208morange\x1b[0m\n\x1b]0;title\x07\x1b[2Jcleared\n")

JOBS = f"""\
[job.backup]
description = "Nightly backup"
retries = 1
timeout = "1h"
env = {{ TOKEN = "s3cret-value" }}
0 2 * * * /usr/local/bin/backup --all

[job.report]
after = ["backup"]
@after /usr/local/bin/report

[job.evil]
description = '{XSS_DESC}'
@every 1h echo '<script>alert("cmd")</script>'

[job.lonely]
@every 5m /bin/true
"""


class Log:
    """A run log written through the store, as the daemon writes it."""

    def __init__(self, path):
        self.store = open_store(str(path))
        self.store.set_daemon(DaemonState(pid=1, pid_start=None, started_at=NOW - 7200, host="h", boot_id="b"))

    def run(self, job: str, ago: float, status: RunStatus = RunStatus.SUCCESS, took: float = 1.0,
            attempt: int = 1, output: bytes | None = None, scheduled: float | None = None, **kw) -> int:
        at = NOW - ago
        [run_id] = self.store.insert_runs(
            [NewRun(job, Trigger.RETRY if attempt > 1 else Trigger.SCHEDULE, attempt,
                    scheduled if scheduled is not None else at)], host="h", boot_id="b")
        self.store.mark_started(run_id, 4242, None, at)
        if status is not RunStatus.RUNNING:
            self.store.finish_run(run_id, status, finished_at=at + took,
                                  exit_code=0 if status is RunStatus.SUCCESS else 3, cpu_s=0.25,
                                  max_rss=5 * 1024 * 1024, output=(output, False) if output is not None else None,
                                  **kw)
        elif output is not None:
            self.store.save_output(run_id, output, False)
        return run_id


@pytest.fixture
def site(tmp_path):
    jobs = tmp_path / "jobs"
    jobs.write_text(JOBS)
    db = tmp_path / "state" / "runs.db"
    log = Log(db)
    ids = {
        "old": log.run("lonely", 3 * 86400, RunStatus.FAILED),  # ids follow time, as the daemon's do
        "b1": log.run("backup", 5 * 3600, took=10),
        "b2": log.run("backup", 4 * 3600, RunStatus.FAILED, took=20, scheduled=NOW - 4 * 3600),
        "b2r": log.run("backup", 4 * 3600 - 60, took=30, attempt=2, scheduled=NOW - 4 * 3600),
        "b3": log.run("backup", 3 * 3600, RunStatus.TIMEOUT, took=3600, reason="timed out after 1h",
                      scheduled=NOW - 3 * 3600),
        "b3r": log.run("backup", 3 * 3600 - 60, RunStatus.FAILED, took=5, attempt=2, scheduled=NOW - 3 * 3600),
        "r1": log.run("report", 4 * 3600 - 30, output=b"report done\n"),
        "e1": log.run("evil", 600, RunStatus.FAILED, output=XSS_OUT),
        "x": log.run("<img src=x onerror=alert(3)>", 30, RunStatus.RUNNING, output=b"live\n"),
    }
    # b3r's failure alert: a webhook that answered 503, then 200; a healthcheck given up.
    log.store.add_deliveries([
        OutboxItem(ids["b3r"], "backup", "failure", "webhook", "https://hooks.example/secret/path?k=1",
                   "https://hooks.example", b"{}", NOW - 3 * 3600),
        OutboxItem(ids["b3r"], "backup", "failure", "healthcheck", "https://hc.example/uuid-secret",
                   "https://hc.example", b"", NOW - 3 * 3600)], 100)
    hook, check = log.store.due_deliveries(NOW, 10)
    log.store.record_delivery(DeliveryAttempt(hook.id, "backup", "webhook", hook.shown, NOW - 3 * 3600 + 1,
                                              False, "503 Service Unavailable", NOW - 3 * 3600 + 2), "pending")
    log.store.record_delivery(DeliveryAttempt(hook.id, "backup", "webhook", hook.shown, NOW - 3 * 3600 + 2,
                                              True, "200 OK", None), "delivered")
    log.store.record_delivery(DeliveryAttempt(check.id, "backup", "healthcheck", check.shown, NOW - 3 * 3600 + 1,
                                              False, "404 Not Found", None), "gave up")
    log.store.close()
    server = WebServer(jobs, db)
    server.ids = ids
    server.db = db
    server.jobs = jobs
    yield server
    server.stop()


def test_the_overview_lists_every_job_with_schedule_last_result_strip_rate_and_median(site):
    data = site.json("/api/overview")
    jobs = {j["name"]: j for j in data["jobs"]}
    assert list(jobs)[:4] == ["backup", "report", "evil", "lonely"]  # jobs-file order
    backup = jobs["backup"]
    assert backup["schedule"] == "0 2 * * *" and backup["zone"]  # a cron job shows its zone
    assert backup["next_run"] is not None and backup["url"] == "/jobs/backup"
    assert backup["last"]["status"] == "failed" and backup["last"]["id"] == site.ids["b3r"]
    assert [r["status"] for r in backup["strip"]] == ["success", "failed", "success", "timeout", "failed"]
    assert backup["success_rate"] == pytest.approx(2 / 3, abs=0.001)  # a retried fire counts as its last attempt
    assert backup["median_duration_s"] == 20
    assert jobs["report"]["shown_next"] == "after backup"
    # a run still going for a job no longer in the jobs file is listed, not hidden
    assert [r["id"] for r in data["running"]] == [site.ids["x"]]
    page = site.html("/")
    assert page.count('<tr class="job"') == 5
    assert '<rect class="s-timeout"' in page and '<rect class="s-failed"' in page


def test_the_overview_searches_by_name_and_sorts(site):
    assert [j["name"] for j in site.json("/api/overview?q=ACK")["jobs"]] == ["backup"]
    names = [j["name"] for j in site.json("/api/overview?sort=name")["jobs"]]
    assert names[:4] == sorted(names[:4], key=str.lower) and names[0] == "<img src=x onerror=alert(3)>"
    by_rate = [j["name"] for j in site.json("/api/overview?sort=rate&order=desc")["jobs"]]
    assert by_rate[:2] == ["report", "backup"]
    assert site.get("/api/overview?sort=colour")[0] == 400
    assert site.json("/api")["pages"] == site.json("/api/")["pages"] and "/api/overview" in site.json("/api")["pages"]
    page = site.html("/?q=rep")
    assert "1 of 5 jobs" in page and 'href="/jobs/report"' in page and 'href="/jobs/backup"' not in page


def test_a_job_page_filters_runs_by_status_and_date_and_pages_through_them(site):
    ids = site.ids
    all_runs = site.json("/api/jobs/backup")["runs"]
    assert [r["id"] for r in all_runs] == [ids[k] for k in ("b3r", "b3", "b2r", "b2", "b1")]
    assert [r["id"] for r in site.json("/api/jobs/backup?status=failed")["runs"]] == [ids["b3r"], ids["b2"]]
    assert [r["id"] for r in site.json("/api/jobs/backup?status=failures")["runs"]] == [ids["b3r"], ids["b3"], ids["b2"]]
    since = site.json("/api/jobs/backup?since=3h30m")["runs"]
    assert [r["id"] for r in since] == [ids["b3r"], ids["b3"]]
    older = site.json(f"/api/jobs/backup?before={ids['b2r']}")
    assert [r["id"] for r in older["runs"]] == [ids["b2"], ids["b1"]]
    retried = {r["id"]: r["retried_ok"] for r in all_runs}
    assert retried[ids["b2"]] is True and retried[ids["b3"]] is False
    assert site.get("/api/jobs/backup?since=yesterday-ish")[0] == 400
    assert site.get("/api/jobs/nope")[0] == 404 and site.get("/jobs/nope")[0] == 404


def test_a_job_page_shows_options_next_fires_chart_and_its_chain_both_ways(site):
    job = site.json("/api/jobs/backup")
    options = {o["key"]: o["value"] for o in job["options"]}
    assert options["timeout"] == "1h00m" and options["retries"] == "1"
    assert "TOKEN" in options["environment"] and "s3cret" not in str(job)  # values may be secrets
    assert len(job["next_fires"]) == 5 and all("02:00:00" in f["shown"] for f in job["next_fires"])
    assert [d["name"] for d in job["downstream"]] == ["report"]
    assert [u["name"] for u in site.json("/api/jobs/report")["upstream"]] == ["backup"]
    assert [p["id"] for p in job["chart"]] == [site.ids[k] for k in ("b1", "b2", "b2r", "b3", "b3r")]
    page = site.html("/jobs/backup")
    chart = page[page.index('<svg class="chart"'):page.index("</svg>", page.index('<svg class="chart"'))]
    assert chart.count("<circle") == 2 and chart.count("<rect") == 3  # successes round, failures square
    assert f"<title>run {site.ids['b3']} · timeout" in chart and f'href="/runs/{site.ids["b3"]}"' in chart
    assert 'href="/jobs/report"' in page


def test_a_run_page_has_every_field_and_its_output_in_parts_with_colours(site):
    run = site.json(f"/api/runs/{site.ids['b3']}")
    for key in ("exit_code", "signal", "reason", "attempt", "trigger", "cpu_s", "max_rss", "host", "pid"):
        assert key in run
    assert run["reason"] == "timed out after 1h" and run["final"] is False  # attempt 2 followed
    page = site.html(f"/runs/{site.ids['b3']}")
    for shown in ("timed out after 1h", "5.0MiB", "0.25s", "schedule", 'id="notifications"'):
        assert shown in page
    part = site.json(f"/api/runs/{site.ids['e1']}/output?offset=0")
    assert ["red bold", "b fg1"] in part["segments"] and ["orange", "fg208"] in part["segments"]
    assert part["next"] == part["size"] == len(XSS_OUT) and part["done"]
    # from an offset, colours set earlier carry over
    later = site.json(f"/api/runs/{site.ids['e1']}/output?offset={XSS_OUT.index(b'red bold') + 3}")
    assert later["segments"][0] == [" bold", "b fg1"]
    assert site.get(f"/runs/{site.ids['e1']}/output.txt")[2] == XSS_OUT


def test_a_run_page_lists_its_alerts_every_attempt_and_never_a_urls_secret_part(site):
    notes = site.json(f"/api/runs/{site.ids['b3r']}")["notifications"]
    assert [(n["receiver"], n["ok"], n["detail"].split(";")[0]) for n in notes] == [
        ("webhook https://hooks.example", False, "503 Service Unavailable"),
        ("webhook https://hooks.example", True, "200 OK"),
        ("healthcheck https://hc.example", False, "404 Not Found")]
    page = site.html(f"/runs/{site.ids['b3r']}")
    assert page.count('<tr class="bad">') == 2 and "503 Service Unavailable" in page
    for secret in ("secret", "uuid", "k=1"):
        assert secret not in page and secret not in str(notes)
    assert site.json(f"/api/runs/{site.ids['b1']}")["notifications"] == []


def test_failures_lists_final_failures_of_every_job_newest_first(site):
    ids = site.ids
    got = [r["id"] for r in site.json("/api/failures")["runs"]]
    # b2 was retried and succeeded, b3 was followed by b3r; `old` is older than the default 24h
    assert got == [ids["e1"], ids["b3r"]]
    assert [r["id"] for r in site.json("/api/failures?since=7d")["runs"]] == [ids["e1"], ids["b3r"], ids["old"]]
    assert [r["id"] for r in site.json("/api/failures?since=7d&until=1h")["runs"]] == [ids["b3r"], ids["old"]]
    page = site.html("/failures")
    assert page.count('<tr class="run"') == 2 and 'href="/jobs/evil"' in page


def test_the_graph_has_a_node_per_chained_job_coloured_by_its_last_result(site):
    graph = site.json("/api/graph")
    assert {n["name"]: n["status"] for n in graph["nodes"]} == {"backup": "failed", "report": "success"}
    assert graph["edges"] == [{"from": "backup", "to": "report"}] and graph["unchained"] == 2
    page = site.html("/graph")
    assert 'class="node s-failed" data-job="backup"' in page and 'class="node s-success" data-job="report"' in page


def test_markup_in_names_descriptions_commands_and_output_shows_as_text(site):
    pages = [site.html("/"), site.html("/jobs/evil"), site.html(f"/runs/{site.ids['e1']}"),
             site.html("/failures"), site.html(f"/runs/{site.ids['x']}")]
    for page in pages:
        assert "<script>alert" not in page and "<img src=x" not in page
        tags = _tags(page)
        assert not [t for t in tags if any(name.startswith("on") for name, _ in t[1])]  # no handlers
        assert not [t for t in tags if t[0] in ("img", "iframe", "object", "embed")]
        assert [dict(t[1]).get("src") for t in tags if t[0] == "script"] in ([], ["/static/live.js"])
    described = re.search(r'<p class="description" id="description">(.*?)</p>', pages[1]).group(1)
    assert "<" not in described and htmllib.unescape(described) == XSS_DESC  # shown as the text it is
    assert "&lt;script&gt;alert(&#34;out&#34;)&lt;/script&gt;" in pages[2]
    assert '<span class="b fg1">red bold</span>' in pages[2] and "\x1b" not in pages[2]
    assert "\\x07" not in pages[2] and "cleared" in pages[2]  # OSC and clear-screen sequences are dropped
    assert "&lt;img src=x onerror=alert(3)&gt;" in pages[0]
    # the JSON twins are JSON, not HTML
    status, headers, _ = site.get(f"/api/runs/{site.ids['e1']}")
    assert headers["content-type"] == "application/json"


def _tags(page: str) -> list[tuple[str, list[tuple[str, str | None]]]]:
    """Every element of an HTML page, as a browser's parser sees them: (tag, attributes)."""
    from html.parser import HTMLParser

    found = []

    class Parser(HTMLParser):
        def handle_starttag(self, tag, attrs):
            found.append((tag, attrs))

    Parser().feed(page)
    return found


def test_every_response_has_a_strict_content_security_policy(site):
    for path in ("/", "/jobs/backup", f"/runs/{site.ids['e1']}", "/failures", "/graph", "/api/overview",
                 "/static/live.js", "/jobs/nope", f"/runs/{site.ids['e1']}/output.txt"):
        status, headers, _ = site.get(path)
        csp = headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert headers["x-content-type-options"] == "nosniff" and headers["x-frame-options"] == "DENY"
    page = site.html("/")
    assert "style=" not in page and not re.search(r"<script>", page)


def test_the_view_writes_nothing_and_answers_only_get_and_head(site):
    before = hashlib.sha256(site.db.read_bytes()).hexdigest()
    assert site.get("/api/overview", method="POST")[0] == 405
    assert site.get("/", method="DELETE")[0] == 405
    assert site.get("/", method="HEAD")[0] == 200
    site.html("/"), site.html("/jobs/backup"), site.html("/failures")
    assert hashlib.sha256(site.db.read_bytes()).hexdigest() == before


def test_config_errors_of_the_jobs_file_are_shown_in_red(site):
    site.jobs.write_text(JOBS + "\n[job.broken]\ntimeuot = '1h'\n@hourly /bin/true\n")
    data = site.json("/api/overview")
    assert any("timeuot" in e for e in data["config_errors"])
    page = site.html("/")
    box = page[page.index('id="config-errors"'):]
    assert "timeuot" in box[:2000] and 'class="error"' in box[:2000]


def _cli(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cronsup", "web", *args], capture_output=True, text=True,
                          timeout=60, **kw)


def test_a_non_loopback_listen_without_an_auth_file_is_refused(tmp_path):
    for listen in ("0.0.0.0:8467", ":8467", "[::]:8467", "192.0.2.1:80"):
        done = _cli("--listen", listen, "--jobs", str(tmp_path / "jobs"), "--db", str(tmp_path / "runs.db"))
        assert done.returncode == 2, done
        assert "without --auth-file" in done.stderr and "Traceback" not in done.stderr
    done = _cli("--listen", "127.0.0.1:99999", "--db", str(tmp_path / "runs.db"))
    assert done.returncode == 2 and "port must be a number" in done.stderr


def test_wrong_credentials_get_401_and_a_user_or_a_token_gets_in(tmp_path):
    hashed = _cli("--hash-password", "alice", input="correct horse\n")
    assert hashed.returncode == 0, hashed.stderr
    line = hashed.stdout.strip()
    assert line.startswith("alice:scrypt:") and "correct horse" not in line
    made = _cli("--new-token", "ci")
    token = made.stderr.strip().rsplit(" ", 1)[1]
    auth = tmp_path / "web-users"
    auth.write_text(f"# who may look\n{line}\n{made.stdout.strip()}\n")
    jobs = tmp_path / "jobs"
    jobs.write_text(JOBS)
    Log(tmp_path / "runs.db").store.close()
    server = WebServer(jobs, tmp_path / "runs.db", "--auth-file", str(auth))
    try:
        for kw in ({}, {"user": ("alice", "wrong")}, {"user": ("bob", "correct horse")}, {"token": "nope"}):
            status, headers, _ = server.get("/api/overview", **kw)
            assert status == 401, kw
            assert headers["www-authenticate"].startswith("Basic")
            assert "content-security-policy" in headers
        assert server.get("/static/style.css")[0] == 401  # nothing is served without credentials
        assert server.get("/api/overview", user=("alice", "correct horse"))[0] == 200
        assert server.get("/", token=token)[0] == 200
    finally:
        server.stop()


def test_a_bad_auth_file_is_refused_with_its_line(tmp_path):
    auth = tmp_path / "web-users"
    auth.write_text("alice:plaintext-password\n")
    done = _cli("--listen", "0.0.0.0:0", "--auth-file", str(auth), "--db", str(tmp_path / "runs.db"))
    assert done.returncode == 1 and f"{auth}:1: not an entry" in done.stderr


def test_the_view_shows_the_jobs_before_any_run_log_exists(tmp_path):
    jobs = tmp_path / "jobs"
    jobs.write_text(JOBS)
    server = WebServer(jobs, tmp_path / "state" / "runs.db")
    try:
        data = server.json("/api/overview")
        assert data["run_log_exists"] is False and len(data["jobs"]) == 4
        assert "(none yet)" in server.html("/")
        assert server.json("/api/jobs/backup")["runs"] == []
        assert server.get("/runs/1")[0] == 404
    finally:
        server.stop()
    assert not (tmp_path / "state").exists()  # read-only: it created nothing


def test_the_overview_costs_the_same_number_of_queries_for_ten_jobs_and_for_a_thousand(tmp_path, monkeypatch):
    from cronsup import report
    from cronsup.web import data

    def count(n: int) -> int:
        d = tmp_path / str(n)
        d.mkdir()
        (d / "jobs").write_text("".join(f"[job.j{i}]\n@every {i + 1}m /bin/true\n" for i in range(n)))
        log = Log(d / "runs.db")
        for i in range(n):
            log.run(f"j{i}", 60, RunStatus.SUCCESS if i % 3 else RunStatus.FAILED)
        log.store.close()
        seen: list[str] = []
        real = report.open_store

        def traced(location, **kw):
            s = real(location, **kw)
            s._conn.set_trace_callback(seen.append)
            return s

        monkeypatch.setattr(report, "open_store", traced)
        result = data.overview(data.Source(db=str(d / "runs.db"), jobs=str(d / "jobs")), NOW)
        monkeypatch.setattr(report, "open_store", real)
        assert len(result["jobs"]) == n
        return len([s for s in seen if s.lstrip().upper().startswith(("SELECT", "WITH"))])

    assert count(10) == count(1000)


def test_the_systemd_unit_runs_the_web_view_as_an_unprivileged_user_and_systemd_accepts_it(tmp_path):
    from conftest import ROOT
    from test_systemd import ANALYZE, CRONSUP, verify

    path = ROOT / "systemd" / "cronsup-web.service"
    unit = path.read_text()
    assert re.search(r"^User=cronsup-web$", unit, re.M) and re.search(r"^Group=cronsup$", unit, re.M)
    assert re.search(r"^ExecStart=/usr/local/bin/cronsup web --listen 127.0.0.1:8467 .*--db /var/lib/cronsup/runs.db$",
                     unit, re.M)
    assert "NoNewPrivileges=yes" in textwrap.dedent(unit)
    if ANALYZE is not None:
        copy = tmp_path / "cronsup-web.service"  # with this checkout's program, which exists here
        copy.write_text(unit.replace("/usr/local/bin/cronsup", str(CRONSUP)))
        assert verify(copy, tmp_path) == ""


def test_an_unprivileged_user_in_the_run_logs_group_can_serve_it_as_the_readme_says(daemon):
    if why := nobody_cannot_run_cronsup():
        pytest.skip(why)
    import grp

    group = grp.getgrnam("nogroup").gr_gid
    home = Path(tempfile.mkdtemp(prefix="cronsup-web-"))  # tmp_path's parents are root's 0700
    try:
        daemon.db = home / "state" / "runs.db"
        daemon.write("[job.tick]\n@every 1s echo tick\n")
        daemon.jobs.chmod(0o644)
        jobs = home / "jobs"
        shutil.copy(daemon.jobs, jobs)
        daemon.start()
        daemon.finished("tick", 1, timeout=30)
        home.chmod(0o755)
        state = daemon.db.parent
        state.chmod(0o751)  # StateDirectoryMode=0751: others may pass, not list
        for name in ("runs.db", "runs.db-wal", "runs.db-shm"):  # the README's chgrp and chmod
            os.chown(state / name, 0, group)
            (state / name).chmod(0o640)
        as_nobody = ("setpriv", "--reuid", "nobody", "--regid", "nogroup", "--clear-groups")
        server = WebServer(jobs, daemon.db, prefix=as_nobody)
        try:
            uid = [line for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines()
                   if line.startswith("Uid:")]
            assert uid and "0" not in uid[0].split()[1:]  # really not root
            data = server.json("/api/overview")
            assert data["daemon"]["running"] is True  # by its heartbeat: the lock is root's 0600
            tick = data["jobs"][0]
            assert tick["name"] == "tick" and tick["last"]["status"] == "success"
            assert server.json(f"/api/runs/{tick['last']['id']}/output")["text"] == "tick\n"
        finally:
            server.stop()
        state.chmod(0o700)  # as the daemon makes it: the user cannot reach the run log, and is told so
        done = subprocess.run([*as_nobody, sys.executable, "-m", "cronsup", "web", "--listen", "127.0.0.1:0",
                               "--jobs", str(jobs), "--db", str(daemon.db)], capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 1 and "permission denied" in done.stderr, done.stderr
    finally:
        daemon.kill()
        shutil.rmtree(home, ignore_errors=True)


def test_the_overview_follows_a_run_from_running_to_its_end(tmp_path):
    jobs = tmp_path / "jobs"
    jobs.write_text("[job.lonely]\n@every 5m /bin/true\n")
    log = Log(tmp_path / "runs.db")
    log.run("lonely", 600, took=4)
    running = log.run("lonely", 30, RunStatus.RUNNING)
    server = WebServer(jobs, tmp_path / "runs.db")
    try:
        for _ in range(2):  # the second look may reuse what the first made
            job = server.json("/api/overview")["jobs"][0]
            assert [r["status"] for r in job["strip"]] == ["success", "running"]
            assert job["success_rate"] == 1.0 and job["last"]["status"] == "success"
            assert "<rect class=\"s-running\"" in server.html("/")
        log.store.finish_run(running, RunStatus.FAILED, finished_at=NOW, exit_code=2)
        job = server.json("/api/overview")["jobs"][0]
        assert [r["status"] for r in job["strip"]] == ["success", "failed"]
        assert job["success_rate"] == 0.5 and job["last"]["id"] == running and job["median_duration_s"] == 17
        assert "<rect class=\"s-running\"" not in server.html("/")
        settled = server.json("/api/overview")["jobs"][0]
        log.run("lonely", 5)
        assert len(server.json("/api/overview")["jobs"][0]["strip"]) == 3 and len(settled["strip"]) == 2
    finally:
        server.stop()
        log.store.close()


def test_a_job_whose_name_holds_url_characters_links_to_its_own_page(tmp_path):
    jobs = tmp_path / "jobs"
    jobs.write_text("[job.lonely]\n@every 5m /bin/true\n")
    log = Log(tmp_path / "runs.db")
    odd = "a?b#c%d e"
    log.run(odd, 30, RunStatus.RUNNING)
    log.store.close()
    server = WebServer(jobs, tmp_path / "runs.db")
    try:
        job = next(j for j in server.json("/api/overview")["jobs"] if j["name"] == odd)
        assert job["url"] == "/jobs/a%3Fb%23c%25d%20e"
        assert server.json("/api" + job["url"])["name"] == odd
        assert "a?b#c%d e" in htmllib.unescape(server.html(job["url"]))
    finally:
        server.stop()


def test_the_overviews_rate_and_median_agree_with_the_stores_stats_for_every_kind_of_history(tmp_path):
    """The overview takes them from the strip's runs where those settle them, else from the
    store: both ways must give what stats_many gives (retries, errors, skips, runs going)."""
    import random

    from cronsup.web import data

    rng = random.Random(12)
    log = Log(tmp_path / "runs.db")
    statuses = [RunStatus.SUCCESS] * 6 + [RunStatus.FAILED, RunStatus.TIMEOUT, RunStatus.KILLED, RunStatus.LOST,
                                          RunStatus.ERROR, RunStatus.SKIPPED, RunStatus.MISSED]
    names = []
    for j, (count, skippy) in enumerate([(0, 0), (1, 0), (7, 0), (29, 0), (30, 0), (31, 0), (45, 0.1), (70, 0.2),
                                          (90, 0.0), (80, 0.9), (40, 0.6), (65, 0.3)]):
        name = f"j{j}"
        names.append(name)
        ago = 10 * 86400.0
        i = 0
        while i < count:
            ago -= 60
            status = RunStatus.SKIPPED if rng.random() < skippy else rng.choice(statuses)
            log.run(name, ago, status, took=rng.choice([0.5, 1.25, 3.0, 7.5, 60.0]), scheduled=NOW - ago)
            i += 1
            if status is RunStatus.FAILED and i < count and rng.random() < 0.5:  # a retry of the same fire
                log.run(name, ago - 5, rng.choice(statuses[:8]), took=2.0, attempt=2, scheduled=NOW - ago)
                i += 1
        if j % 4 == 1:
            log.run(name, 1, RunStatus.RUNNING)
    expected = log.store.stats_many(names, data.STATS_RUNS)
    strips = log.store.recent_marks_many(names, data.STRIP_RUNS)
    log.store.close()
    settled = 0
    for name in names:
        got = data.stats_from_marks(strips[name], len(strips[name]) < data.STRIP_RUNS)
        if got is not None:
            settled += 1
            assert got == expected[name], name
    assert 0 < settled < len(names)  # both ways are taken
    jobs = tmp_path / "jobs"
    jobs.write_text("".join(f"[job.{n}]\n@every 1h /bin/true\n" for n in names))
    src = data.Source(db=str(tmp_path / "runs.db"), jobs=str(jobs))
    for _ in range(2):  # and the second look, from what the first kept
        shown = {j["name"]: j for j in data.overview(src, NOW)["jobs"]}
        for name in names:
            rate, median = expected[name]
            assert shown[name]["success_rate"] == (None if rate is None else round(rate, 3)), name
            assert shown[name]["median_duration_s"] == (None if median is None else round(median, 3)), name


def test_a_job_whose_strip_moves_by_one_run_shows_the_same_page_as_a_fresh_view(tmp_path):
    """The strips' cells are kept between looks: a view that kept them and one that starts
    afresh draw the same overview, HTML and JSON."""
    from cronsup.web import data

    jobs = tmp_path / "jobs"
    jobs.write_text("".join(f"[job.j{i}]\n@every 1h /bin/true\n" for i in range(3)))
    log = Log(tmp_path / "runs.db")
    for k in range(40):
        for i in range(3):
            log.run(f"j{i}", 4000 - k * 60 - i, RunStatus.FAILED if (k + i) % 7 == 0 else RunStatus.SUCCESS)
    kept = data.Source(db=str(tmp_path / "runs.db"), jobs=str(jobs))
    data.overview(kept, NOW, html=True), data.overview(kept, NOW)
    log.run("j1", 10, RunStatus.TIMEOUT, took=9)
    running = log.run("j2", 5, RunStatus.RUNNING)
    for step in range(2):
        fresh = data.Source(db=str(tmp_path / "runs.db"), jobs=str(jobs))
        for html in (True, False):
            assert data.overview(kept, NOW, html=html) == data.overview(fresh, NOW, html=html)
        log.store.finish_run(running, RunStatus.SUCCESS, finished_at=NOW - 1, exit_code=0)
    log.store.close()


def test_a_view_that_reads_only_the_newer_runs_shows_what_a_fresh_view_shows_whatever_came(tmp_path):
    """After a look the overview reads only the runs newer than the ones it kept, and the
    last result from the strip's runs: look after look, with one run, more than a strip's
    worth, skipped runs (the last result older than the strip) or nothing new, a view that
    kept everything and a fresh one draw the same overview."""
    import random

    from cronsup.web import data

    rng = random.Random(7)
    names = [f"j{i}" for i in range(6)]
    jobs = tmp_path / "jobs"
    jobs.write_text("".join(f"[job.{n}]\n@every 1h /bin/true\n" for n in names))
    log = Log(tmp_path / "runs.db")
    ago = 90_000.0
    for name in names:
        for _ in range(rng.randrange(0, 35)):
            ago -= 7
            log.run(name, ago, rng.choice([RunStatus.SUCCESS, RunStatus.FAILED]))
    kept = data.Source(db=str(tmp_path / "runs.db"), jobs=str(jobs))
    data.overview(kept, NOW, html=True)
    data.overview(kept, NOW)
    for step in range(8):
        for name in rng.sample(names, rng.randrange(0, len(names))):
            count = rng.choice([1, 1, 2, 31, 45])
            status = RunStatus.SKIPPED if name == "j5" else None  # j5: strips of skipped runs only
            for _ in range(count):
                ago -= 7
                log.run(name, ago, status or rng.choice([RunStatus.SUCCESS, RunStatus.FAILED, RunStatus.SKIPPED,
                                                         RunStatus.TIMEOUT]))
        fresh = data.Source(db=str(tmp_path / "runs.db"), jobs=str(jobs))
        for html in (True, False):
            assert data.overview(kept, NOW, html=html) == data.overview(fresh, NOW, html=html), step
    # A strip of skipped runs only: the last result is older than the strip, from the store.
    ended = log.run("j5", ago - 1, RunStatus.SUCCESS)
    for k in range(31):
        log.run("j5", ago - 2 - k, RunStatus.SKIPPED)
    fresh = data.Source(db=str(tmp_path / "runs.db"), jobs=str(jobs))
    assert data.overview(kept, NOW) == data.overview(fresh, NOW)
    shown = {j["name"]: j for j in data.overview(kept, NOW)["jobs"]}
    assert all(m["status"] == "skipped" for m in shown["j5"]["strip"])
    assert shown["j5"]["last"]["id"] == ended and shown["j5"]["last"]["status"] == "success"
    log.store.close()


def test_the_pages_one_inline_style_is_the_one_the_csp_allows_by_its_hash(site):
    import base64

    _, headers, body = site.get("/")
    page = body.decode()
    styles = re.findall(r"<style>(.*?)</style>", page, flags=re.S)
    assert len(styles) == 1 and ".s-success" in styles[0] and ".fg1{" in styles[0]
    digest = base64.b64encode(hashlib.sha256(styles[0].encode()).digest()).decode()
    assert f"style-src 'self' 'sha256-{digest}'" in headers["content-security-policy"]
    assert '<link rel="stylesheet"' not in page  # a first paint waits for no stylesheet request


def test_the_view_builds_each_page_once_before_it_prints_its_url_and_none_fails(site):
    assert site.json("/api/overview")["jobs"]  # it answers at once
    site.stop()
    said = site.proc.stderr.read()
    assert "warming" not in said and "Traceback" not in said, said
