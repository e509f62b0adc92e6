"""Metrics (SPEC section 5): the series checked against the run log of a real daemon, validated
by promtool, counters that never go down, /health, and a scrape that never delays a start."""

from __future__ import annotations

import signal
import socket
import sqlite3
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest
from conftest import DaemonProcess, free_port, wait_until
from prometheus_client.parser import text_string_to_metric_families
from sysdeps import need

from cronsup.daemon import Daemon, DaemonError
from cronsup.metrics import text
from cronsup.metrics_server import ListenError, parse_listen
from cronsup.model import RunStatus
from cronsup.store import DURATION_BUCKETS, RAN_STATUSES, SqliteStore
from cronsup.store.sqlite import schema

HISTORY = """\
[job.ok]
@every 1s true
[job.bad]
@every 1s exit 3
"""


def get(url: str, timeout: float = 10) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def samples(exposition: str) -> dict[tuple[str, frozenset], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(exposition) for s in family.samples}


def value(found, name: str, **labels) -> float | None:
    return found.get((name, frozenset(labels.items())))


def runs_totals(found) -> dict[tuple[str, str], float]:
    return {(dict(k)["job"], dict(k)["status"]): v for (n, k), v in found.items()
            if n == "cronsup_job_runs_total"}


def cli_metrics(d: DaemonProcess, *args: str) -> str:
    return d.cli("metrics", *args, check=True).stdout


@pytest.fixture(scope="module")
def promtool():
    return need("prometheus", "promtool")


def promtool_check(promtool: str, exposition: str) -> None:
    done = subprocess.run([promtool, "check", "metrics"], input=exposition, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


# -- addresses ------------------------------------------------------------------------------


def test_listen_addresses_default_to_loopback_and_malformed_ones_say_what_is_expected():
    assert parse_listen("9464") == ("127.0.0.1", 9464)
    assert parse_listen("0.0.0.0:9100") == ("0.0.0.0", 9100)
    assert parse_listen("[::1]:9100") == ("::1", 9100)
    assert parse_listen("localhost:9100") == ("localhost", 9100)
    for bad, said in ((":9100", "give the address too"), ("9100:", "port must be"), ("abc", "ADDR:PORT"),
                      ("::1:9100", r"\[ADDR\]:PORT"), ("1.2.3.4:99999", "1 to 65535"),
                      ("[nope]:9", "not an IPv6"), ("127.0.0.1:0", "1 to 65535")):
        with pytest.raises(ListenError, match=said):
            parse_listen(bad)


def test_a_malformed_metrics_address_is_refused_before_anything_starts(daemon):
    daemon.write(HISTORY)
    done = daemon.cli("daemon", "--metrics", ":9100")
    assert done.returncode == 2 and "--metrics" in done.stderr and "give the address" in done.stderr
    assert "Traceback" not in done.stderr and not daemon.db.exists()


def test_a_metrics_port_in_use_is_a_clear_error_at_start(daemon):
    daemon.write(HISTORY)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = daemon.cli("daemon", "--metrics", str(port))
    assert done.returncode == 1, done.stderr
    assert f"cannot listen for metrics on 127.0.0.1:{port}: Address already in use" in done.stderr
    assert "Traceback" not in done.stderr


# -- the series against the run log ------------------------------------------------------------


def test_the_series_match_the_run_log_of_a_real_daemon_and_pass_promtool(daemon, promtool):
    daemon.write(HISTORY)
    port = free_port()
    daemon.start("--metrics", f"127.0.0.1:{port}")
    daemon.finished("ok", 3, timeout=30)
    daemon.finished("bad", 2, timeout=30)
    status, live = get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    promtool_check(promtool, live)
    assert get(f"http://127.0.0.1:{port}/health")[0] == 200
    daemon.cli("pause", "bad", check=True)
    assert daemon.stop() == 0

    exposition = cli_metrics(daemon)  # no daemon now: read from the run log
    promtool_check(promtool, exposition)
    found = samples(exposition)
    runs = daemon.runs()
    with SqliteStore.open(str(daemon.db), readonly=True) as log:
        jobs = {row.name: row for row in log.jobs()}
        started_at = log.daemon().started_at
    assert sorted(jobs) == ["bad", "ok"]
    for job in jobs:
        mine = [r for r in runs if r.job == job]
        for status in RunStatus:
            if status is not RunStatus.RUNNING:
                assert value(found, "cronsup_job_runs_total", job=job, status=str(status)) == \
                    sum(r.status is status for r in mine), (job, status)
        ran = [r for r in mine if r.status in RAN_STATUSES]
        latest = max(ran, key=lambda r: r.id)
        assert value(found, "cronsup_job_last_run_timestamp_seconds", job=job) == \
            max(r.started_at for r in mine if r.started_at is not None)
        assert value(found, "cronsup_job_last_exit_code", job=job) == latest.exit_code
        assert value(found, "cronsup_job_last_duration_seconds", job=job) == pytest.approx(latest.duration_s)
        assert value(found, "cronsup_job_running", job=job) == 0
        assert value(found, "cronsup_job_next_run_timestamp_seconds", job=job) == jobs[job].next_run
        # The histogram: its count is the runs that ran, each in the bucket of its duration.
        assert value(found, "cronsup_job_duration_seconds_count", job=job) == len(ran) == sum(
            value(found, "cronsup_job_runs_total", job=job, status=str(s)) for s in RAN_STATUSES)
        assert value(found, "cronsup_job_duration_seconds_sum", job=job) == \
            pytest.approx(sum(r.duration_s for r in ran))
        for bound in DURATION_BUCKETS:
            assert value(found, "cronsup_job_duration_seconds_bucket", job=job, le=f"{bound:g}") == \
                sum(r.duration_s <= bound for r in ran)
    assert value(found, "cronsup_job_last_success_timestamp_seconds", job="ok") == \
        max(r.finished_at for r in runs if r.job == "ok" and r.status is RunStatus.SUCCESS)
    assert value(found, "cronsup_job_last_success_timestamp_seconds", job="bad") is None  # never
    assert value(found, "cronsup_job_last_exit_code", job="bad") == 3
    assert value(found, "cronsup_job_paused", job="bad") == 1
    assert value(found, "cronsup_job_paused", job="ok") == 0
    assert value(found, "cronsup_config_error") == 0
    assert value(found, "cronsup_notifications_failed_total") == 0
    assert value(found, "cronsup_daemon_start_time_seconds") == started_at


def test_runs_total_never_goes_down_across_a_restart_a_reload_and_pruning(daemon):
    daemon.write(HISTORY)
    daemon.start("--keep-runs", "2")
    daemon.finished("ok", 4, timeout=30)
    assert daemon.stop() == 0
    first = runs_totals(samples(cli_metrics(daemon)))
    assert first[("ok", "success")] >= 4

    daemon.start("--keep-runs", "2")  # start-up prunes to the newest 2 runs a job
    kept = [r for r in daemon.runs("ok") if r.status is RunStatus.SUCCESS]
    after_restart = runs_totals(samples(cli_metrics(daemon)))
    assert len(kept) < first[("ok", "success")] <= after_restart[("ok", "success")]
    assert all(after_restart[key] >= n for key, n in first.items())

    daemon.write(HISTORY + "[job.new]\n@every 1s true\n")
    wait_until(lambda: any(j["name"] == "new" for j in daemon.status()["jobs"]), 30, what="the reload")
    after_reload = runs_totals(samples(cli_metrics(daemon)))
    assert all(after_reload[key] >= n for key, n in after_restart.items())
    assert ("new", "success") in after_reload
    assert daemon.stop() == 0


def test_an_upgraded_run_log_starts_its_counters_from_the_runs_it_holds(tmp_path):
    db = str(tmp_path / "runs.db")
    step = next(i for i, s in enumerate(schema.MIGRATIONS) if "CREATE TABLE counters" in s[0])
    conn = sqlite3.connect(db)
    for statement in (st for s in schema.MIGRATIONS[:step] for st in s):
        conn.execute(statement)
    rows = [("a", "success", 0.0, 0.5), ("a", "success", 60.0, 62.0), ("a", "failed", 120.0, 160.0),
            ("a", "skipped", None, None), ("b", "running", 10.0, None)]
    for i, (job, status, started, finished) in enumerate(rows):
        conn.execute("INSERT INTO runs (job, trigger, attempt, scheduled_for, started_at, finished_at, "
                     "status, host, boot_id) VALUES (?, 'schedule', 1, ?, ?, ?, ?, 'h', 'b')",
                     (job, i * 60.0, started, finished, status))
    conn.execute(f"PRAGMA user_version = {step}")
    conn.commit()
    conn.close()
    with SqliteStore.open(db) as log:
        found = samples(text(log))
        assert "cronsup_job_runs_total" not in {n for n, _ in found}  # no jobs table rows yet
        counters = {(c.name, c.labels): c.value for c in log.counters()}
    assert counters[("runs", (("job", "a"), ("status", "success")))] == 2
    assert counters[("runs", (("job", "a"), ("status", "failed")))] == 1
    assert counters[("runs", (("job", "a"), ("status", "skipped")))] == 1
    assert not any(labels == (("job", "b"), ("status", "running")) for _, labels in counters)
    assert counters[("run_duration_bucket", (("job", "a"), ("le", "1")))] == 1
    assert counters[("run_duration_bucket", (("job", "a"), ("le", "5")))] == 1
    assert counters[("run_duration_bucket", (("job", "a"), ("le", "60")))] == 1
    assert counters[("run_duration_sum", (("job", "a"),))] == pytest.approx(42.5)


def test_failed_notifications_are_read_from_their_counter(tmp_path):
    with SqliteStore.open(tmp_path / "runs.db") as log:
        log.add_counter("notifications_failed", {"channel": "webhook"}, 2)
        log.add_counter("notifications_failed", {"channel": "healthcheck"})
        found = samples(text(log))
    assert value(found, "cronsup_notifications_failed_total", channel="webhook") == 2
    assert value(found, "cronsup_notifications_failed_total", channel="healthcheck") == 1


def test_the_textfile_is_written_whole_for_node_exporter(daemon, promtool, tmp_path):
    daemon.write(HISTORY)
    daemon.start()
    daemon.finished("ok", 1, timeout=30)
    out = tmp_path / "textfile"
    out.mkdir()
    done = daemon.cli("metrics", "--textfile", str(out), check=True)
    assert done.stdout == ""
    assert [p.name for p in out.iterdir()] == ["cronsup.prom"]  # no temporary file left
    exposition = (out / "cronsup.prom").read_text()
    promtool_check(promtool, exposition)
    assert value(samples(exposition), "cronsup_job_runs_total", job="ok", status="success") >= 1
    missing = daemon.cli("metrics", "--textfile", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "no such directory" in missing.stderr
    assert daemon.stop() == 0


# -- /health ------------------------------------------------------------------------------


def test_health_is_503_while_the_loop_does_not_answer_and_200_when_it_does(tmp_path, monkeypatch):
    from cronsup import metrics_server

    monkeypatch.setattr(metrics_server, "HEALTH_PATIENCE", 0.3)
    (tmp_path / "jobs").write_text("@daily true\n")
    d = Daemon(str(tmp_path / "jobs"), str(tmp_path / "state" / "runs.db"),
               sendmail=str(tmp_path / "no-sendmail"), metrics=("127.0.0.1", 0))
    d.start()
    try:
        url = f"http://127.0.0.1:{d.metrics.port}/health"
        status, body = get(url)  # the test is not stepping the loop: it is "hung"
        assert status == 503 and "has not answered for 0.3s" in body
        answers: list[tuple[int, str]] = []
        asker = threading.Thread(target=lambda: answers.append(get(url)))
        asker.start()
        while asker.is_alive():
            d.step(max_wait=0.01)
        assert answers[0][0] == 200 and answers[0][1].startswith("ok")
        assert get(f"http://127.0.0.1:{d.metrics.port}/nope")[0] == 404
    finally:
        d.flags.stop = signal.SIGTERM
        while d.step(max_wait=0.05):
            pass
        d.close()


def test_a_daemon_built_twice_on_one_port_refuses_the_second(tmp_path):
    (tmp_path / "jobs").write_text("@daily true\n")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        d = Daemon(str(tmp_path / "jobs"), str(tmp_path / "runs.db"), sendmail=str(tmp_path / "x"),
                   metrics=("127.0.0.1", taken.getsockname()[1]))
        with pytest.raises(DaemonError, match="cannot listen for metrics"):
            d.start()
        d.close()  # the lock it took


# -- a scrape never delays a start ---------------------------------------------------------------


def test_scraping_a_thousand_jobs_does_not_delay_a_due_start(daemon):
    daemon.write("[job.tick]\n@every 1s true\n" + "".join(f"[job.j{i}]\n@daily true\n" for i in range(999)))
    port = free_port()
    daemon.start("--metrics", str(port))
    url = f"http://127.0.0.1:{port}/metrics"
    stop = threading.Event()
    scrapes: list[float] = []

    def scrape() -> None:
        while not stop.is_set():
            began = time.monotonic()
            status, body = get(url)
            assert status == 200 and body.count("cronsup_job_paused{") == 1000
            scrapes.append(time.monotonic() - began)

    scraper = threading.Thread(target=scrape, daemon=True)
    wait_until(lambda: get(url)[0] == 200, 15, what="the metrics listener")
    began = time.time()
    scraper.start()
    try:
        wait_until(lambda: len([r for r in daemon.runs("tick") if r.scheduled_for > began + 0.5
                                and r.started_at]) >= 5, 30, what="5 ticks while scraping")
    finally:
        stop.set()
        scraper.join(30)
    ticks = [r for r in daemon.runs("tick") if r.scheduled_for > began + 0.5 and r.started_at]
    late = [r.started_at - r.scheduled_for for r in ticks]
    assert len(scrapes) >= 5, scrapes  # scrapes went on all along
    # All but one: a start may be late because the loaded machine gave the daemon no CPU, scrape
    # or not (idle, this machine shows an occasional 80 ms); a scrape over a start is late each time.
    assert sorted(late)[-2] < 0.05, late
    assert daemon.stop() == 0


def test_the_fast_exposition_says_what_prometheus_client_says(tmp_path):
    from cronsup.metrics import StoreCollector, exposition
    from cronsup.store import DaemonState, JobRow
    from store_contract import T, claim, ran

    with SqliteStore.open(tmp_path / "runs.db") as log:
        log.set_daemon(DaemonState(pid=1, pid_start=None, started_at=T, config_error="jobs:3: bad"))
        odd = 'we"ird\\job'
        log.set_jobs([JobRow(odd, "@daily", "true", "", T + 86400, True, 1),
                      JobRow("b", "@hourly", "true", "", None, True, 2, retry_at=T + 30)])
        ran(log, odd, T, RunStatus.KILLED, duration=2.5)
        claim(log, "b", T)
        log.add_counter("notifications_failed", {"channel": "webhook", "job": "b"})
        fast = exposition(StoreCollector(lambda: log).read()).decode()
        found = samples(fast)
        assert found == samples(text(log))
    assert value(found, "cronsup_config_error") == 1
    assert value(found, "cronsup_job_duration_seconds_bucket", job=odd, le="1") == 0
    assert value(found, "cronsup_job_duration_seconds_bucket", job=odd, le="5") == 1
    assert value(found, "cronsup_job_running", job="b") == 1
    assert value(found, "cronsup_job_next_run_timestamp_seconds", job="b") == T + 30  # the retry
    assert value(found, "cronsup_notifications_failed_total", channel="webhook", job="b") == 1


# -- the README's Prometheus examples ---------------------------------------------------------

RULE_TEST = """\
rule_files: [rules.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'cronsup_job_last_success_timestamp_seconds{instance="db1", job="backup"}'
        values: '0x30'
      - series: 'cronsup_job_last_run_timestamp_seconds{instance="db1", job="backup"}'
        values: '0+60x30'
      - series: 'cronsup_job_next_run_timestamp_seconds{instance="db1", job="backup"}'
        values: '60+60x30'
      - series: 'cronsup_job_paused{instance="db1", job="backup"}'
        values: '0x30'
      - series: 'cronsup_job_last_success_timestamp_seconds{instance="db1", job="paused"}'
        values: '0x30'
      - series: 'cronsup_job_last_run_timestamp_seconds{instance="db1", job="paused"}'
        values: '0+60x30'
      - series: 'cronsup_job_next_run_timestamp_seconds{instance="db1", job="paused"}'
        values: '60+60x30'
      - series: 'cronsup_job_paused{instance="db1", job="paused"}'
        values: '1x30'
    alert_rule_test:
      - eval_time: 2m
        alertname: CronJobNotSucceeding
        exp_alerts: []
      - eval_time: 10m
        alertname: CronJobNotSucceeding
        exp_alerts:
          - exp_labels: {instance: db1, job: backup}
            exp_annotations:
              summary: "backup on db1 has not succeeded for two periods"
"""


def test_the_readmes_scrape_config_and_alert_rules_pass_promtool(promtool, tmp_path):
    import re
    from conftest import ROOT

    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Metrics"):]
    scrape, rules = re.findall(r"```yaml\n(.*?)```", section, re.S)[:2]
    (tmp_path / "prometheus.yml").write_text(scrape)
    (tmp_path / "rules.yml").write_text(rules)
    (tmp_path / "test.yml").write_text(RULE_TEST)
    for args in (["check", "config", "prometheus.yml"], ["check", "rules", "rules.yml"],
                 ["test", "rules", "test.yml"]):  # the rule fires after two missed periods, not for a paused job
        done = subprocess.run([promtool, *args], cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
