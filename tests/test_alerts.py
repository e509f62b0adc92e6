"""Alerts end to end: the real daemon, a real HTTP receiver on 127.0.0.1, the outbox in the run log."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import json
import os
import pwd
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import pytest

from cronsup import alerts, channels
from tests.conftest import free_port, wait_until

SECRET_PATH = "hookpathTOPSECRET"
SECRET_QUERY = "tokenHUSHHUSH"
YEARLY = "0 0 1 1 *"  # never due during a test: runs come from `cronsup run`


@dataclass
class Request:
    path: str
    headers: dict
    body: bytes
    at: float

    @property
    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A threading http.server that records every POST and answers from a script:
    `answers` are popped one per request (an int status, or "hang"); then `default`."""

    server: http.server.ThreadingHTTPServer
    requests: list[Request] = field(default_factory=list)
    answers: list = field(default_factory=list)
    default: object = 200
    headers: dict = field(default_factory=dict)
    release: threading.Event = field(default_factory=threading.Event)
    delay: float = 0.0  # seconds each answer takes (a slow endpoint)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def url(self, name: str = "hook") -> str:
        return f"{self.base}/{name}/{SECRET_PATH}?t={SECRET_QUERY}"

    def events(self, name: str = "hook") -> list[dict]:
        return [r.json for r in list(self.requests) if r.path.startswith(f"/{name}/")]


@pytest.fixture
def receiver():
    rec: Receiver

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            answer = rec.answers.pop(0) if rec.answers else rec.default
            rec.requests.append(Request(self.path, dict(self.headers), body, time.time()))
            if answer == "hang":
                rec.release.wait(30)
                return
            rec.release.wait(rec.delay)
            self.send_response(answer)
            for key, value in rec.headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    rec = Receiver(server)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield rec
    rec.release.set()
    server.shutdown()
    server.server_close()


def job_block(name: str, command: str, schedule: str = YEARLY, **options) -> str:
    lines = [f"[job.{name}]"]
    for key, value in options.items():
        lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join(lines) + f"\n{schedule} {command}\n"


def run_now(daemon, job: str) -> None:
    daemon.cli("run", job, check=True)


def all_text(daemon, *jobs_and_runs) -> str:
    """Everything an admin can see: the daemon's log, status, logs and logs --run (text, JSON)."""
    texts = [daemon.output()]
    for args in (("status",), ("status", "--json")):
        result = daemon.cli(*args)
        texts += [result.stdout, result.stderr]
    for job, run_id in jobs_and_runs:
        for args in (("logs", job), ("logs", job, "--run", str(run_id)),
                     ("logs", job, "--run", str(run_id), "--json")):
            result = daemon.cli(*args)
            texts += [result.stdout, result.stderr]
    return "\n".join(texts)


def test_a_job_that_fails_twice_then_succeeds_within_its_retries_sends_no_failure_and_no_recovery(
        daemon, receiver, tmp_path):
    count = tmp_path / "count"
    script = f'n=$(cat {count} 2>/dev/null || echo 0); echo $((n+1)) > {count}; [ "$n" -ge 2 ]'
    daemon.write(job_block("flaky", script, retries=2, retry_delay="100ms", retry_jitter=False,
                           webhook=receiver.url(), notify_on=["failure", "recovery", "success"]))
    daemon.start()
    run_now(daemon, "flaky")
    wait_until(lambda: receiver.events(), 20, what="the success event")
    runs = daemon.finished("flaky", 3)
    assert [r.status for r in runs] == ["failed", "failed", "success"]
    assert [e["event"] for e in receiver.events()] == ["success"]
    event = receiver.events()[0]
    assert event["run"]["attempt"] == 3 and event["consecutive_failures"] == 0
    assert event["previous_status"] is None


def test_exhausted_retries_send_exactly_one_failure_with_its_details_then_a_recovery(
        daemon, receiver, tmp_path):
    flag = tmp_path / "fixed"
    daemon.write(job_block("backup", f"echo disk full; [ -e {flag} ] || exit 7", retries=1,
                           retry_delay="100ms", retry_jitter=False, webhook=receiver.url()))
    daemon.start()
    run_now(daemon, "backup")
    wait_until(lambda: receiver.events(), 20, what="the failure event")
    runs = daemon.finished("backup", 2)
    # Both attempts' alerts are settled (the retry sends nothing): still exactly one event.
    wait_until(lambda: not json.loads(daemon.cli("logs", "backup", "--run", str(runs[0].id), "--json").stdout)["alerts"]
               and json.loads(daemon.cli("logs", "backup", "--run", str(runs[1].id), "--json").stdout)["alerts"][0]["state"]
               == "delivered", 10, what="the failure's delivery to be recorded")
    events = receiver.events()
    assert len(events) == 1
    event = events[0]
    assert event["version"] == 1 and event["event"] == "failure" and event["job"] == "backup"
    assert event["run"]["exit_code"] == 7 and event["run"]["attempt"] == 2
    assert event["run"]["reason"] == "exit code 7" and event["run"]["status"] == "failed"
    assert event["run"]["id"] == runs[1].id
    assert event["output_tail"] == "disk full\n" and event["output_truncated"] is False
    assert event["consecutive_failures"] == 1 and event["previous_status"] is None
    assert event["host"] and "next_run" in event
    flag.touch()
    run_now(daemon, "backup")
    wait_until(lambda: len(receiver.events()) == 2, 20, what="the recovery event")
    recovery = receiver.events()[1]
    assert recovery["event"] == "recovery" and recovery["previous_status"] == "failed"
    assert recovery["consecutive_failures"] == 0 and recovery["run"]["status"] == "success"


def test_a_healthcheck_gets_start_then_the_exit_code_with_one_run_id_and_a_body_within_its_limit(
        daemon, receiver):
    receiver.headers["Ping-Body-Limit"] = "8"
    daemon.write(job_block("hc", "echo 0123456789abcdef; exit 3", healthcheck=receiver.url("ping"))
                 + job_block("hcok", "echo fine", healthcheck=receiver.url("ok")))
    daemon.start()
    run_now(daemon, "hc")
    wait_until(lambda: len([r for r in receiver.requests if r.path.startswith("/ping/")]) >= 2, 20,
               what="two pings")
    start, end = [r for r in receiver.requests if r.path.startswith("/ping/")]
    assert urlsplit(start.path).path == f"/ping/{SECRET_PATH}/start" and start.body == b""
    assert urlsplit(end.path).path == f"/ping/{SECRET_PATH}/3"
    rid = parse_qs(urlsplit(start.path).query)["rid"]
    assert rid == parse_qs(urlsplit(end.path).query)["rid"] and len(rid[0]) == 36
    assert parse_qs(urlsplit(end.path).query)["t"] == [SECRET_QUERY]  # the URL's own query kept
    assert end.body == b"0123456789abcdef\n"[-8:]  # the output's tail, shrunk to Ping-Body-Limit
    run_now(daemon, "hcok")
    wait_until(lambda: len([r for r in receiver.requests if r.path.startswith("/ok/")]) >= 2, 20,
               what="the success ping")
    ok = [r for r in receiver.requests if r.path.startswith("/ok/")][1]
    assert urlsplit(ok.path).path == f"/ok/{SECRET_PATH}" and ok.body.startswith(b"fine")


def test_a_receiver_answering_503_twice_gets_the_event_three_times_and_logs_lists_the_attempts(
        daemon, receiver):
    receiver.answers = [503, 503]
    daemon.write(job_block("j", "exit 1", webhook=receiver.url()))
    daemon.start()
    run_now(daemon, "j")
    run = daemon.finished("j")[0]
    wait_until(lambda: len(receiver.events()) == 3, 30, what="three deliveries")
    ids = {r.headers["webhook-id"] for r in receiver.requests}
    assert len(ids) == 1  # one message, tried three times
    data = wait_until(lambda: (d := json.loads(daemon.cli("logs", "j", "--run", str(run.id), "--json").stdout))
                      ["alerts"][0]["state"] == "delivered" and d, 10, what="the delivery recorded")
    attempts = data["alerts"][0]["attempts"]
    assert [a["answer"] for a in attempts] == ["503 Service Unavailable", "503 Service Unavailable", "200 OK"]
    assert [a["ok"] for a in attempts] == [False, False, True]
    assert attempts[0]["next_try"] and attempts[2]["next_try"] is None
    text = daemon.cli("logs", "j", "--run", str(run.id)).stdout
    assert "failure to webhook " + receiver.base + ": delivered, 3 tries" in text
    assert text.count("503 Service Unavailable") == 2 and "200 OK" in text


def test_a_4xx_is_not_retried_and_status_shows_the_failing_channel(daemon, receiver):
    receiver.default = 404
    daemon.write(job_block("gone", "exit 1", webhook=receiver.url()))
    daemon.start()
    run_now(daemon, "gone")
    job = wait_until(lambda: [j for j in daemon.status()["jobs"] if j["alerts_failing"]], 20,
                     what="a failing channel in status")[0]
    assert job["alerts_failing"][0]["answer"] == "404 Not Found"
    assert job["alerts_failing"][0]["next_try"] is None and job["alerts_failing"][0]["channel"] == "webhook"
    assert "alerts failing: webhook " + receiver.base + ": 404 Not Found" in daemon.cli("status").stdout
    assert len(receiver.requests) == 1


def test_a_receiver_that_never_answers_does_not_delay_a_due_start(daemon, receiver):
    receiver.default = "hang"
    daemon.write(job_block("noisy", "exit 1", schedule="@every 1s", webhook=receiver.url())
                 + job_block("tick", "true", schedule="@every 1s"))
    daemon.start()
    wait_until(lambda: len(receiver.requests) >= 2, 20, what="two hanging deliveries")
    seen = len(daemon.runs("tick"))
    wait_until(lambda: len(daemon.runs("tick")) >= seen + 5, 20, what="five more starts")
    late = [r.started_at - r.scheduled_for for r in daemon.runs("tick")[seen:seen + 5]]
    assert len(receiver.requests) >= 2 and not receiver.release.is_set()  # still hanging
    # Each delivery hangs for its whole 10 s timeout: a start waiting on one would be seconds
    # late. One start in five may lose 50 ms to this loaded machine's other work.
    assert sorted(late)[3] < 0.05 and max(late) < 0.5, late


def test_an_alert_pending_when_the_daemon_stops_is_delivered_after_it_starts(daemon, receiver):
    receiver.default = 503
    daemon.write(job_block("j", "exit 2", webhook=receiver.url()))
    daemon.start()
    run_now(daemon, "j")
    wait_until(lambda: receiver.requests, 20, what="a first attempt")
    assert daemon.stop() == 0
    tried = len(receiver.requests)
    receiver.default = 200
    daemon.start()
    wait_until(lambda: len(receiver.requests) > tried, 20, what="the delivery after the restart")
    first, last = receiver.requests[0], receiver.requests[-1]
    assert last.headers["webhook-id"] == first.headers["webhook-id"] and last.body == first.body
    assert last.json["event"] == "failure" and last.json["run"]["exit_code"] == 2


def test_a_signed_webhook_verifies_with_the_secret_file(daemon, receiver, tmp_path):
    key = os.urandom(24)
    secret = tmp_path / "secret"
    secret.write_text("whsec_" + base64.b64encode(key).decode() + "\n")
    secret.chmod(0o600)
    daemon.write(job_block("signed", "exit 1", webhook=receiver.url(), webhook_secret_file=str(secret)))
    daemon.start()
    run_now(daemon, "signed")
    request = wait_until(lambda: receiver.requests, 20, what="the event")[0]
    h = request.headers
    signed = f"{h['webhook-id']}.{h['webhook-timestamp']}.".encode() + request.body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    assert h["webhook-signature"] == f"v1,{expected}"
    assert abs(int(h["webhook-timestamp"]) - time.time()) < 60


def test_the_signature_matches_the_standard_webhooks_reference():
    headers = channels.signature_headers(
        channels.signing_key(b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), "msg_p5jXN8AQM9LWM0D4loKWxJek",
        1614265330, b'{"test": 2432232314}')
    assert headers["webhook-signature"] == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_notify_command_runs_as_the_jobs_user_with_the_event_in_its_environment(daemon):
    options = {"user": "nobody"} if os.geteuid() == 0 else {}
    # Its last line of output is its answer, shown by `logs --run` (pytest's temp dirs are
    # closed to nobody, so it cannot write a file there).
    command = ('echo "$CRONSUP_EVENT|$CRONSUP_JOB|$CRONSUP_RUN_ID|$CRONSUP_STATUS|$CRONSUP_EXIT_CODE|'
               '$CRONSUP_REASON|$(id -u)|$(cat "$CRONSUP_OUTPUT_FILE")|$CRONSUP_OUTPUT_FILE"')
    daemon.write(job_block("cmd", "echo it broke; exit 4", workdir="/", notify_command=command, **options))
    daemon.start()
    run_now(daemon, "cmd")
    run = daemon.finished("cmd")[0]
    alert = wait_until(lambda: (a := json.loads(daemon.cli("logs", "cmd", "--run", str(run.id), "--json").stdout)
                                ["alerts"]) and a[0]["state"] == "delivered" and a[0], 20,
                       what="the notify_command")
    answer = alert["attempts"][0]["answer"]
    assert alert["channel"] == "command" and alert["target"] == "notify_command"
    fields = answer.removeprefix("exit code 0: ").split("|")
    uid = pwd.getpwnam("nobody").pw_uid if os.geteuid() == 0 else os.geteuid()
    assert fields[:8] == ["failure", "cmd", str(run.id), "failed", "4", "exit code 4", str(uid), "it broke"]
    assert fields[8].startswith("/") and not os.path.exists(fields[8])  # removed after the command


def test_mail_on_failure_mails_only_final_failures(daemon, tmp_path):
    flag = tmp_path / "fail"
    daemon.write("MAILTO=ops@example.com\n" + job_block(
        "m", f"echo report; [ ! -e {flag} ]", mail_on="failure"))
    daemon.start()
    run_now(daemon, "m")
    daemon.finished("m")
    flag.touch()
    run_now(daemon, "m")
    daemon.finished("m", 2)
    wait_until(lambda: daemon.mailbox.exists() and b"report" in daemon.mailbox.read_bytes(), 20,
               what="the failure mail")
    mailbox = daemon.mailbox.read_text()
    assert mailbox.count("To: ops@example.com") == 1
    assert "X-Cronsup-Run: failed: exit code 1" in mailbox


def test_no_url_path_or_query_is_ever_shown(daemon, receiver, tmp_path):
    receiver.default = 500
    url_file = tmp_path / "url"
    url_file.write_text(f"http://127.0.0.1:{free_port()}/refused/{SECRET_PATH}?k={SECRET_QUERY}\n")
    url_file.chmod(0o600)
    daemon.write(job_block("s", "exit 1", webhook=[receiver.url(), f"file:{url_file}"],
                           healthcheck=receiver.url("ping"), notify_on=["failure", "start"]))
    daemon.start()
    run_now(daemon, "s")
    run = daemon.finished("s")[0]
    wait_until(lambda: len(receiver.requests) >= 5, 20, what="several failed attempts")
    wait_until(lambda: "connection refused" in daemon.cli("logs", "s", "--run", str(run.id)).stdout, 10,
               what="the refused file: URL's attempt")
    test = daemon.cli("notify-test", "s")
    assert test.returncode == 1 and "500 Internal Server Error" in test.stdout
    text = all_text(daemon, ("s", run.id)) + test.stdout + test.stderr
    daemon.stop()
    text += daemon.output()
    assert f"file:{url_file}" in text and receiver.base in text  # scheme and host are shown
    assert SECRET_PATH not in text and SECRET_QUERY not in text


def test_notify_test_sends_a_test_event_through_every_channel(daemon, receiver, tmp_path):
    marker = tmp_path / "cmd"
    daemon.write("MAILTO=ops@example.com\n" + job_block(
        "t", "true", webhook=receiver.url(), healthcheck=receiver.url("ping"),
        notify_command=f"echo $CRONSUP_EVENT > {marker}"))
    result = daemon.cli("notify-test", "t")  # no daemon runs
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[1] for line in lines] == ["webhook", "healthcheck", "notify_command", "mail"]
    assert all(line.startswith("ok") for line in lines)
    assert receiver.events()[0]["event"] == "test"
    assert urlsplit([r for r in receiver.requests if r.path.startswith("/ping/")][0].path).path.endswith("/log")
    assert marker.read_text() == "test\n"
    receiver.default = 404
    failed = daemon.cli("notify-test", "t")
    assert failed.returncode == 1 and "FAILED  webhook" in failed.stdout


def test_alert_options_are_checked_with_file_and_line(daemon):
    daemon.write(job_block("a", "true", webhook="ftp://example.com/x", notify_on=["failur"],
                           mail_on="sometimes", healthcheck="file:relative"))
    result = daemon.cli("check", str(daemon.jobs))
    assert result.returncode == 1
    err = result.stderr
    assert f"{daemon.jobs}:2: webhook: expected an http:// or https:// URL" in err
    assert f"{daemon.jobs}:3: notify_on: 'failur' is not an event" in err and "did you mean 'failure'" in err
    assert f"{daemon.jobs}:4: mail_on: 'sometimes' is not one of" in err
    assert f"{daemon.jobs}:5: healthcheck: file: must be followed by an absolute path" in err


def test_retry_delays_double_and_honour_retry_after():
    assert 0.5 <= alerts.retry_delay(1, None) <= 1.0
    assert 4.0 <= alerts.retry_delay(4, None) <= 8.0
    assert alerts.retry_delay(30, None) <= alerts.MAX_RETRY_DELAY
    assert alerts.retry_delay(1, 120.0) == 120.0
    assert alerts.retry_delay(1, 1e9) == alerts.MAX_RETRY_AFTER


def test_ping_urls_follow_the_healthchecks_protocol():
    base = "https://hc-ping.com/abc/"
    assert channels.ping_url(base, "start", "R") == "https://hc-ping.com/abc/start?rid=R"
    assert channels.ping_url(base, "success", "R") == "https://hc-ping.com/abc?rid=R"
    assert channels.ping_url(base, "fail", "R", 3) == "https://hc-ping.com/abc/3?rid=R"
    assert channels.ping_url(base, "fail", "R", None) == "https://hc-ping.com/abc/fail?rid=R"
    assert channels.ping_url("https://h/p?create=1", "fail", "R", 0) == "https://h/p/fail?create=1&rid=R"



def test_consecutive_failures_count_fires_not_attempts(tmp_path):
    from cronsup.model import RunStatus, Trigger
    from cronsup.store import NewRun, SqliteStore

    with SqliteStore.open(str(tmp_path / "runs.db")) as store:
        def ran(at, status, attempt=1):
            [run_id] = store.insert_runs([NewRun("j", Trigger.SCHEDULE if attempt == 1 else Trigger.RETRY,
                                                 attempt, at)], host="h", boot_id="b")
            store.finish_run(run_id, status, finished_at=at + 1)
            return run_id

        ran(100, RunStatus.SUCCESS)
        ran(200, RunStatus.FAILED)
        ran(300, RunStatus.FAILED)
        ran(300, RunStatus.TIMEOUT, attempt=2)  # one fire, retried: one final failure
        first = ran(400, RunStatus.FAILED)
        current = ran(400, RunStatus.FAILED, attempt=2)
        assert alerts.failures_before(store, "j", current, 400) == (2, "timeout")
        assert alerts.failures_before(store, "j", first, 400) == (2, "timeout")
        assert alerts.failures_before(store, "j", 2, 200) == (0, "success")


def test_a_full_outbox_drops_its_oldest_alerts_logs_it_and_counts_them_as_failed(tmp_path, caplog):
    from cronsup.events import Event
    from cronsup.model import Every, JobSpec, JobsFile, Outcome, RunStatus, Trigger
    from cronsup.store import SqliteStore

    db = str(tmp_path / "runs.db")
    spec = JobSpec("j", Every("@every 1h", 3600), "exit 1", 1, webhook=("http://127.0.0.1:1/x",))
    sender = alerts.Sender(db, lambda: JobsFile("jobs", (spec,)), lambda: SqliteStore.open(db),
                           workers=0, max_pending=2)
    before = alerts.gave_up_counts().get("webhook", 0)
    for n in range(3):
        sender.submit(Event("failure", "j", spec, None, Outcome(RunStatus.FAILED, "exit code 1"), "h",
                            1000.0 + n, Trigger.SCHEDULE, 1, 1000.0 + n))
    wait_until(lambda: sender.dropped == 1, 10, what="a drop")
    sender.close(2)
    assert alerts.gave_up_counts()["webhook"] == before + 1
    assert "dropped the 1 oldest unsent" in caplog.text and "127.0.0.1:1" in caplog.text
    assert "/x" not in caplog.text
    with SqliteStore.open(db, readonly=True) as store:
        assert store.due_deliveries(2000.0, 10)[0].created_at == 1001.0
