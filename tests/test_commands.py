"""The admin's commands: status, logs, run, reload, pause and resume.

Read-only commands go through click's CliRunner on a run log the real daemon wrote; commands
that talk to the daemon run end to end against the real daemon in a temp dir.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from conftest import DaemonProcess, wait_until
from cronsup import cli, fmt
from cronsup.store import SqliteStore

RUN_KEYS = {"id", "job", "trigger", "attempt", "scheduled_for", "started_at", "finished_at",
            "duration_s", "status", "exit_code", "signal", "pid", "host", "reason", "cpu_s", "max_rss",
            "params"}
LOGS_RUN_KEYS = RUN_KEYS | {"retried_ok"}  # `logs` says whether a later attempt succeeded

BUILT_JOBS = """\
    [job.hello]
    @every 1s echo hello; printf 'evil\\033[2J\\r\\n'
    [job.flaky]
    retries = 1
    retry_delay = "0.1s"
    retry_jitter = false
    @every 1h echo trying; exit 3
    [job.nightly]
    description = "Nightly full backup"
    0 2 * * * /usr/local/bin/backup --all
    """


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> DaemonProcess:
    """A run log the real daemon wrote (hello ran 3 times, flaky failed twice), daemon stopped."""
    d = DaemonProcess(tmp_path_factory.mktemp("built"))
    d.write(BUILT_JOBS)
    d.start()
    try:
        assert d.cli("run", "flaky", "--wait").returncode == 1
        d.finished("hello", 3)
        assert d.stop() == 0
    finally:
        d.kill()
    return d


def invoke(d: DaemonProcess, *args: str, **env: str | None):
    """`cronsup ARGS --jobs .. --db ..` through CliRunner: not a terminal, no COLUMNS."""
    runner = CliRunner(env={"COLUMNS": None, "NO_COLOR": None, **env})
    return runner.invoke(cli.main, [*args, "--jobs", str(d.jobs), "--db", str(d.db)])


def runs_of(d: DaemonProcess, job: str):
    with SqliteStore.open(str(d.db), readonly=True) as log:
        return log.runs(job, limit=None)


# -- status ---------------------------------------------------------------------------------


def test_status_while_the_daemon_is_stopped_shows_jobs_from_the_file_and_runs_from_the_log(built):
    result = invoke(built, "status")
    assert result.exit_code == 3, result.output  # no daemon
    out = result.output
    assert "daemon     not running: stopped" in out and "start it with `cronsup daemon" in out
    assert f"jobs file  {built.jobs} (3 jobs)" in out
    lines = {line.split()[0]: line for line in out.splitlines() if line.split()}
    assert lines["JOB"].split() == ["JOB", "SCHEDULE", "NEXT", "LAST", "RESULT", "TOOK", "OK", "MEDIAN"]
    assert "success" in lines["hello"] and "100%" in lines["hello"]
    assert "failed (3)" in lines["flaky"] and "0%" in lines["flaky"]
    assert "never" in lines["nightly"] and " in " in lines["nightly"]  # 02:00 in 5h10m


def test_status_json_has_the_spec_shape(built):
    result = invoke(built, "status", "--json")
    data = json.loads(result.output)
    assert {"running", "pid", "started_at", "jobs_file", "config_error"} <= set(data["daemon"])
    assert data["daemon"]["running"] is False and data["daemon"]["config_error"] is None
    jobs = {j["name"]: j for j in data["jobs"]}
    assert list(jobs) == ["hello", "flaky", "nightly"]
    for job in jobs.values():
        assert {"name", "schedule", "command", "paused", "next_run", "last_run", "running"} <= set(job)
    assert jobs["nightly"]["schedule"] == "0 2 * * *" and jobs["nightly"]["last_run"] is None
    assert jobs["nightly"]["next_run"].endswith(("+00:00", "Z")) or "+" in jobs["nightly"]["next_run"]
    flaky = jobs["flaky"]["last_run"]
    assert set(flaky) == RUN_KEYS
    assert (flaky["status"], flaky["exit_code"], flaky["trigger"], flaky["attempt"]) == ("failed", 3, "retry", 2)
    assert jobs["flaky"]["success_rate"] == 0.0 and jobs["hello"]["success_rate"] == 1.0
    assert jobs["hello"]["running"] == []


def test_status_with_no_run_log_yet_lists_the_jobs_file(tmp_path):
    d = DaemonProcess(tmp_path)
    d.write(BUILT_JOBS)
    result = invoke(d, "status")
    assert result.exit_code == 3, result.output
    assert "it has not run with this run log yet" in result.output
    assert f"run log    {d.db} (none yet)" in result.output
    rows = [line.split()[0] for line in result.output.splitlines() if line and not line.startswith(" ")]
    assert rows[-3:] == ["hello", "flaky", "nightly"]
    assert "  Nightly" in result.output  # descriptions show under their job
    data = json.loads(invoke(d, "status", "--json").output)
    assert data["daemon"]["run_log_exists"] is False and len(data["jobs"]) == 3


def test_status_fits_80_columns_with_a_long_job_name_and_a_long_schedule(tmp_path):
    d = DaemonProcess(tmp_path)
    long_name = "a-really-long-job-name-for-the-reporting-pipeline"
    d.write(f"""\
        [job.{long_name}]
        */5 1-3,7,9-11,13,15-17 1-7,15 jan-mar,oct-dec mon-fri /bin/report
        [job.backup]
        0 2 * * * /bin/backup
        """)
    result = invoke(d, "status", COLUMNS="80")
    lines = result.output.splitlines()
    lines = lines[lines.index(next(line for line in lines if line.startswith("JOB"))):]
    assert max(len(line) for line in lines) <= 80, result.output  # paths above are never cut
    assert long_name in lines  # never cut: a name too wide gets a line of its own
    assert any(line.startswith("backup ") for line in lines)
    assert any("*/5 1-3" in line and "…" in line for line in lines)  # the schedule is cut


def test_status_shows_an_error_in_the_jobs_file_prominently(tmp_path):
    d = DaemonProcess(tmp_path)
    d.write("[job.a]\nretries = -1\n@daily true\n")
    result = invoke(d, "status")
    assert result.exit_code == 1  # the file's errors win over "no daemon" (3)
    assert f"JOBS FILE ERROR: {d.jobs}:2: " in result.output
    assert f"`cronsup check {d.jobs}` lists every error" in result.output
    assert json.loads(invoke(d, "status", "--json").output)["daemon"]["config_error"].startswith(f"{d.jobs}:2:")


# -- logs -------------------------------------------------------------------------------------


def test_logs_lists_runs_newest_first_with_trigger_attempt_status_and_exit_code(built):
    result = invoke(built, "logs", "flaky")
    assert result.exit_code == 0, result.output
    header, *rows = result.output.splitlines()
    assert header.split() == ["ID", "TRIGGER", "TRY", "STARTED", "TOOK", "STATUS", "EXIT", "REASON"]
    retry, manual = [row.split() for row in rows]
    assert retry[1:3] == ["retry", "2"] and manual[1:3] == ["manual", "1"]
    assert int(retry[0]) > int(manual[0])
    assert retry[-5:] == ["failed", "3", "exit", "code", "3"]
    assert "attempt 2 of 2" in rows[1]


def test_logs_json_is_a_list_of_spec_runs_newest_first(built):
    data = json.loads(invoke(built, "logs", "hello", "--json").output)
    assert len(data) >= 3 and all(set(run) == LOGS_RUN_KEYS for run in data)
    assert [r["id"] for r in data] == sorted((r["id"] for r in data), reverse=True)
    assert {r["status"] for r in data} == {"success"} and data[0]["exit_code"] == 0
    with_output = json.loads(invoke(built, "logs", "hello", "--json", "--output", "-n", "1").output)
    assert with_output[0]["output"] == "hello\nevil\x1b[2J\r\n" and with_output[0]["output_truncated"] is False


def test_logs_limits_and_filters_runs(built):
    assert len(json.loads(invoke(built, "logs", "hello", "--json", "-n", "2").output)) == 2
    assert json.loads(invoke(built, "logs", "hello", "--json", "--failed").output) == []
    assert len(json.loads(invoke(built, "logs", "flaky", "--json", "--failed").output)) == 2
    assert len(json.loads(invoke(built, "logs", "flaky", "--json", "--since", "1h").output)) == 2
    assert json.loads(invoke(built, "logs", "flaky", "--json", "--since", "0.001").output) == []
    assert "no failed runs of hello yet" in invoke(built, "logs", "hello", "--failed").output


def test_logs_run_shows_one_run_in_full_with_its_output(built):
    run = runs_of(built, "flaky")[0]
    result = invoke(built, "logs", "flaky", "--run", str(run.id))
    assert result.exit_code == 0
    assert f"run:           {run.id}" in result.output and "status:        failed" in result.output
    assert "exit code:     3" in result.output and "reason:        exit code 3" in result.output
    assert result.output.endswith("trying\n")
    one = json.loads(invoke(built, "logs", "flaky", "--run", str(run.id), "--json").output)
    assert one["id"] == run.id and one["output"] == "trying\n"


def test_logs_run_of_another_jobs_run_or_of_no_run_is_a_usage_error(built):
    run = runs_of(built, "flaky")[0]
    result = invoke(built, "logs", "hello", "--run", str(run.id))
    assert result.exit_code == 2 and f"run {run.id} is a run of flaky, not hello" in result.stderr
    result = invoke(built, "logs", "hello", "--run", "999999")
    assert result.exit_code == 2 and "no run 999999" in result.stderr


def test_logs_of_an_unknown_job_is_an_error_that_lists_close_names(built):
    result = invoke(built, "logs", "helo")
    assert result.exit_code == 2 and "no job named 'helo'; did you mean hello?" in result.stderr
    result = invoke(built, "logs", "zzz")
    assert result.exit_code == 2 and "its jobs are hello, flaky, nightly" in result.stderr


def test_logs_output_is_raw_when_not_a_terminal(built):
    result = invoke(built, "logs", "hello", "--output", "-n", "1")
    assert b"\nhello\nevil\x1b[2J\r\n" in result.stdout_bytes


def test_captured_output_is_escaped_for_a_terminal():
    text = fmt.safe_output(b"ok\x1b[2J\x1b]0;title\x07\rforged\ttab\n\xe2\x80\xaerev\x9b\n", escape=True)
    # Tabs and newlines stay; a byte that is not UTF-8 (here \x9b, a C1 CSI) becomes U+FFFD.
    assert text == "ok\\x1b[2J\\x1b]0;title\\x07\\x0dforged\ttab\n\\u202erev\ufffd\n"
    assert "\x1b" not in text and "\r" not in text
    assert fmt.safe_output(b"ok\x1b[2J\n", escape=False) == "ok\x1b[2J\n"


def test_logs_of_a_job_before_any_run_log_exists_says_there_are_no_runs(tmp_path):
    d = DaemonProcess(tmp_path)
    d.write(BUILT_JOBS)
    result = invoke(d, "logs", "nightly")
    assert result.exit_code == 0 and "no runs of nightly yet" in result.output
    assert json.loads(invoke(d, "logs", "nightly", "--json").output) == []
    assert invoke(d, "logs", "nightyl").exit_code == 2


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to another uid")
def test_status_and_logs_as_another_user_say_permission_denied_not_no_run_log(built):
    import pwd

    nobody = pwd.getpwnam("nobody")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # become nobody, run the commands in this process, report through the pipe
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            answers = [invoke(built, "status"), invoke(built, "logs", "hello")]
            os.write(w, json.dumps([[a.exit_code, a.stderr] for a in answers]).encode())
        finally:
            os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    with os.fdopen(r) as f:
        answers = json.loads(f.read())
    for code, stderr in answers:
        assert code == 1 and "permission denied" in stderr and str(built.db) in stderr, stderr


# -- without a daemon -------------------------------------------------------------------------


@pytest.mark.parametrize("args", [["run", "hello"], ["run", "hello", "--wait"], ["reload"],
                                  ["pause", "hello"], ["resume", "hello"]])
def test_commands_that_need_the_daemon_exit_3_without_one_and_say_how_to_start_it(built, args):
    result = invoke(built, *args)
    assert result.exit_code == 3, result.output
    assert "no daemon is running" in result.stderr and "start one with `cronsup daemon" in result.stderr
    assert f"--db {built.db}" in result.stderr


@pytest.mark.parametrize("args", [["run"], ["logs", "hello", "--since", "soon"], ["logs", "hello", "-n", "0"],
                                  ["logs", "hello", "--run", "1", "--follow"], ["pause"], ["status", "--bogus"]])
def test_usage_errors_exit_2(built, args):
    assert invoke(built, *args).exit_code == 2


# -- formatting -------------------------------------------------------------------------------


def test_relative_times_are_coarse_enough_for_a_glance():
    assert fmt.relative(1000 + 2.4, 1000) == "in 2s"
    assert fmt.relative(1000 + 185, 1000) == "in 3m"
    assert fmt.relative(1000 + 3 * 3600 + 300, 1000) == "in 3h05m"
    assert fmt.relative(1000 - 90000, 1000) == "1d1h ago"
    assert fmt.relative(1000.2, 1000) == "now" and fmt.relative(999.8, 1000) == "1s ago"


def test_a_table_shrinks_its_shrinkable_columns_to_fit_and_folds_the_last():
    columns = [fmt.Column("NAME", wrap=True, shrink=True, least=6), fmt.Column("WHAT", shrink=True, least=5),
               fmt.Column("WHY", shrink=True, least=10, fold=True)]
    rows = [["short", "a b c d e f g h", "one two three four five six seven"],
            ["a-name-that-is-far-too-long", "x", "y"], "  ↳ a note under the row"]
    lines = fmt.table(columns, rows, 30)
    assert max(len(line) for line in lines) <= 30
    assert "a-name-that-is-far-too-long" in lines and "  ↳ a note under the row" in lines
    assert any(line.strip() == "seven" or line.strip().endswith("seven") for line in lines)
    assert any("…" in line for line in lines)


# -- with the daemon --------------------------------------------------------------------------


def test_run_wait_exits_0_when_the_run_succeeds_and_prints_its_id(daemon):
    daemon.write("[job.ok]\n@every 1h echo fine\n")
    daemon.start()
    result = daemon.cli("run", "ok", "--wait")
    assert result.returncode == 0, result.stdout + result.stderr
    (run,) = daemon.runs("ok")
    assert run.trigger == "manual" and run.status == "success"
    assert f"ok: started run {run.id}" in result.stdout and f"run {run.id} success" in result.stdout
    result = daemon.cli("run", "ok")  # without --wait: the id, at once
    assert result.returncode == 0 and result.stdout.startswith("ok: started run ")


def test_run_wait_exits_1_when_the_run_and_its_retries_fail(daemon):
    daemon.write("[job.bad]\nretries = 1\nretry_delay = \"0.1s\"\nretry_jitter = false\n@every 1h exit 4\n")
    daemon.start()
    result = daemon.cli("run", "bad", "--wait")
    assert result.returncode == 1
    first, retry = daemon.runs("bad")
    assert (first.trigger, retry.trigger, retry.attempt) == ("manual", "retry", 2)
    assert f"run {retry.id} failed" in result.stdout and f"cronsup logs bad --run {retry.id}" in result.stdout


def test_run_wait_follows_a_retry_that_succeeds(daemon):
    flag = daemon.tmp / "second-time"
    daemon.write(f"""\
        [job.second]
        retries = 2
        retry_delay = "0.1s"
        retry_jitter = false
        @every 1h test -e {flag} || {{ touch {flag}; exit 1; }}
        """)
    daemon.start()
    result = daemon.cli("run", "second", "--wait")
    assert result.returncode == 0, result.stdout
    assert [(r.trigger, r.status) for r in daemon.runs("second")] == [("manual", "failed"), ("retry", "success")]
    assert "(retry, attempt 2)" in result.stdout


def test_run_wait_of_a_queued_run_waits_for_it_to_start_and_end(daemon):
    # The first run holds until the test opens its gate, so the second is queued however
    # slowly `run --wait` starts.
    gate = daemon.tmp / "gate"
    daemon.write(f"[job.q]\noverlap = \"queue\"\n@every 1h while [ ! -e {gate} ]; do sleep 0.05; done; echo done\n")
    daemon.start()
    first = daemon.cli("run", "q", check=True)
    assert first.stdout.startswith("q: started run ")
    proc = subprocess.Popen(
        [sys.executable, "-m", "cronsup", "run", "q", "--wait", "--jobs", str(daemon.jobs), "--db", str(daemon.db)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        text = read_until(proc, lambda t: "q: queued, to start when the running run ends" in t)
        assert len(daemon.runs("q")) == 1
        gate.touch()
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    text += out.decode()
    assert proc.returncode == 0, text + err.decode()
    one, two = daemon.runs("q")
    assert f"q: started run {two.id}" in text and f"run {two.id} success" in text
    assert two.started_at >= one.finished_at


def test_run_of_an_unknown_job_is_a_usage_error_that_names_close_ones(daemon):
    daemon.write("[job.backup]\n@every 1h true\n")
    daemon.start()
    result = daemon.cli("run", "backpu")
    assert result.returncode == 2 and "did you mean backup?" in result.stderr
    assert daemon.cli("pause", "nope").returncode == 2


def test_pause_stops_scheduled_starts_and_survives_a_daemon_restart(daemon):
    daemon.write("""\
        [job.tick]
        @every 1s true
        [job.clock]
        @every 1s true
        """)
    daemon.start()
    daemon.finished("tick")
    result = daemon.cli("pause", "tick", check=True)
    assert "tick: paused" in result.stdout
    assert "already paused" in daemon.cli("pause", "tick", check=True).stdout

    def quiet_while_clock_ticks(times: int = 3) -> None:
        before = {r.id for r in daemon.runs("tick")}
        start = len(daemon.runs("clock"))
        wait_until(lambda: len(daemon.runs("clock")) >= start + times, 15, what="clock to tick")
        wait_until(lambda: all(r.status != "running" for r in daemon.runs("tick")), 5)
        assert {r.id for r in daemon.runs("tick") if r.trigger == "schedule"} <= before

    quiet_while_clock_ticks()
    daemon.stop()
    daemon.start()
    assert {j["name"]: j["paused"] for j in daemon.status()["jobs"]} == {"tick": True, "clock": False}
    quiet_while_clock_ticks()
    manual = daemon.cli("run", "tick", "--wait")  # a paused job still runs by hand
    assert manual.returncode == 0
    count = len(daemon.runs("tick"))
    result = daemon.cli("resume", "tick", check=True)
    assert "tick: resumed; next run" in result.stdout
    wait_until(lambda: any(r.trigger == "schedule" for r in daemon.runs("tick")[count:]), 10,
               what="a scheduled run after resume")


def test_status_shows_a_running_job_with_its_pid_and_the_daemon(daemon):
    daemon.write("[job.long]\n@every 1s sleep 300\n")
    daemon.start()
    run = wait_until(lambda: next((r for r in daemon.runs("long") if r.pid), None), what="a started run")
    result = daemon.cli("status")
    assert result.returncode == 0
    assert f"daemon     running, pid {daemon.proc.pid}, up " in result.stdout
    assert f"↳ running now: run {run.id}, pid {run.pid}, for " in result.stdout
    data = daemon.status()
    (job,) = data["jobs"]
    assert data["daemon"]["running"] is True and data["daemon"]["pid"] == daemon.proc.pid
    assert job["running"][0]["id"] == run.id and job["running"][0]["status"] == "running"


def test_reload_reports_an_error_and_the_daemon_keeps_the_last_good_version(daemon):
    daemon.write("[job.a]\n@every 1h true\n")
    daemon.start()
    daemon.write("[job.a]\n@every 1h true\n[job.b]\nretries = -1\n@every 1h true\n")
    result = daemon.cli("reload")
    assert result.returncode == 1 and f"{daemon.jobs}:4:" in result.stderr
    assert "last good version" in result.stderr
    status = daemon.cli("status").stdout
    assert f"JOBS FILE ERROR (running the last good version): {daemon.jobs}:4:" in status
    daemon.write("[job.a]\n@every 1h true\n[job.b]\n@every 1h true\n")
    result = daemon.cli("reload")
    assert result.returncode == 0 and f"reloaded: 2 jobs from {daemon.jobs}" in result.stdout


def read_until(proc: subprocess.Popen, predicate, timeout: float = 15) -> str:
    """Read the process's stdout until predicate(text so far) holds; fail at the deadline."""
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    sel = selectors.DefaultSelector()
    sel.register(fd, selectors.EVENT_READ)
    text = ""
    deadline = time.monotonic() + timeout
    while not predicate(text):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out; read so far:\n{text}")
        if sel.select(left):
            chunk = os.read(fd, 65536)
            if not chunk:
                raise AssertionError(f"the process ended; read:\n{text}")
            text += chunk.decode(errors="replace")
    sel.close()
    return text


def where(pid: int) -> str:
    """What a process is blocked in (kernel wait channel, signals), for a failure message."""
    try:
        with open(f"/proc/{pid}/wchan") as f:
            wchan = f.read()
        with open(f"/proc/{pid}/status") as f:
            sigs = [line for line in f.read().splitlines() if line.startswith(("State", "Sig"))]
        return f"wchan {wchan}; {'; '.join(sigs)}"
    except OSError as e:
        return str(e)


def test_logs_follow_prints_new_runs_and_their_output_as_they_happen(daemon):
    daemon.write("[job.tick]\n@every 1s echo tick-$$\n")
    daemon.start()
    first = daemon.finished("tick")[0]
    proc = subprocess.Popen(
        [sys.executable, "-m", "cronsup", "logs", "tick", "--follow", "--output", "-n", "1",
         "--jobs", str(daemon.jobs), "--db", str(daemon.db)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        text = read_until(proc, lambda t: t.count("── run ") >= 3 and t.count("tick-") >= 3)
        ids = [int(line.split()[2]) for line in text.splitlines() if line.startswith("── run ")]
        assert ids[0] >= first.id and max(ids) > ids[0]  # runs that started after it did
        # Between its looks it holds no read transaction: a full checkpoint goes through.
        conn = sqlite3.connect(str(daemon.db), timeout=5)
        try:
            busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            conn.close()
        assert busy == 0
        read_until(proc, lambda t: t.count("── run ") >= 1)  # and it goes on
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            assert proc.wait(20) == 0
        except subprocess.TimeoutExpired:
            raise AssertionError(f"logs --follow did not stop on SIGINT: {where(proc.pid)}") from None
        finally:
            proc.kill()
            proc.stdout.close()
            proc.stderr.close()


def test_logs_follow_json_prints_one_object_per_line(built, tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "cronsup", "logs", "hello", "--follow", "--json", "-n", "2",
         "--jobs", str(built.jobs), "--db", str(built.db)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        text = read_until(proc, lambda t: t.count("\n") >= 2)
        runs = [json.loads(line) for line in text.splitlines()]
        assert all(set(r) == LOGS_RUN_KEYS for r in runs) and runs[0]["id"] < runs[1]["id"]
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stdout.close()
        proc.stderr.close()


def test_every_command_here_has_help_with_an_example():
    for name in ("status", "logs", "run", "reload", "pause", "resume"):
        assert "Example" in cli.command(name).help


def test_the_daemon_command_hint_names_non_default_paths(tmp_path):
    hint = cli._start_hint(str(tmp_path / "jobs"), str(tmp_path / "runs.db"))
    assert hint == f"`cronsup daemon --jobs {tmp_path / 'jobs'} --db {tmp_path / 'runs.db'}`"


def test_logs_run_id_alone_finds_its_job(built):
    run_id = json.loads(invoke(built, "logs", "hello", "--json").output)[0]["id"]
    result = invoke(built, "logs", "--run", str(run_id))
    assert result.exit_code == 0 and "job:" in result.output and "hello" in result.output



def test_logs_without_a_job_lists_every_jobs_runs_newest_first_with_a_job_column(built):
    result = invoke(built, "logs", "-n", "50")
    assert result.exit_code == 0, result.output
    header, *rows = result.output.splitlines()
    assert header.split()[:3] == ["ID", "JOB", "TRIGGER"]
    ids = [int(row.split()[0]) for row in rows if row.split() and row.split()[0].isdigit()]
    assert ids == sorted(ids, reverse=True)
    assert {row.split()[1] for row in rows if row.split() and row.split()[0].isdigit()} == {"hello", "flaky"}


def test_logs_failed_since_without_a_job_answers_which_job(built):
    data = json.loads(invoke(built, "logs", "--failed", "--since", "12h", "--json").output)
    assert {r["job"] for r in data} == {"flaky"} and len(data) == 2
    assert all(set(r) == LOGS_RUN_KEYS and r["retried_ok"] is False for r in data)
    text = invoke(built, "logs", "--failed", "--since", "12h").output
    assert "flaky" in text and "hello" not in text


def test_logs_failed_marks_an_attempt_whose_retry_then_succeeded(tmp_path):
    from cronsup.model import RunStatus, Trigger
    from cronsup.store import NewRun

    db = str(tmp_path / "runs.db")
    with SqliteStore.open(db) as log:
        t = 1_764_000_000.0
        first, retry = log.insert_runs([NewRun("flaky", Trigger.SCHEDULE, 1, t),
                                        NewRun("flaky", Trigger.RETRY, 2, t)], host="h", boot_id="b")
        log.finish_run(first, RunStatus.FAILED, finished_at=t + 1, exit_code=3, reason="exit code 3")
        log.finish_run(retry, RunStatus.SUCCESS, finished_at=t + 2, exit_code=0)
    args = ["--jobs", str(tmp_path / "jobs"), "--db", db]
    runner = CliRunner(env={"COLUMNS": "200"})
    text = runner.invoke(cli.main, ["logs", "flaky", "--failed", *args]).output
    assert "exit code 3 (retried: attempt 2 succeeded)" in text
    data = json.loads(runner.invoke(cli.main, ["logs", "--failed", "--json", *args]).output)
    assert [(r["id"], r["retried_ok"]) for r in data] == [(first, True)]
    one = runner.invoke(cli.main, ["logs", "--run", str(first), *args]).output
    assert "retried: attempt 2 succeeded" in one


def test_logs_follow_without_a_job_follows_every_job(daemon):
    daemon.write("[job.one]\n@every 1s echo one\n[job.two]\n@every 1s echo two\n")
    daemon.start()
    daemon.finished("one")
    proc = subprocess.Popen(
        [sys.executable, "-m", "cronsup", "logs", "--follow", "--json", "-n", "1",
         "--jobs", str(daemon.jobs), "--db", str(daemon.db)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        text = read_until(proc, lambda t: t.endswith("\n") and {"one", "two"} <= {
            json.loads(line)["job"] for line in t.splitlines()})
        jobs = [json.loads(line)["job"] for line in text.splitlines()]
        assert set(jobs) == {"one", "two"}
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stdout.close()
        proc.stderr.close()


def test_status_ok_column_counts_error_runs_as_not_ok_like_failed_ones(tmp_path):
    from cronsup.model import RunStatus, Trigger
    from cronsup.store import NewRun

    jobs = tmp_path / "jobs"
    jobs.write_text("[job.badshell]\n@daily true\n[job.failing]\n@daily false\n")
    db = str(tmp_path / "runs.db")
    with SqliteStore.open(db) as log:
        for i in range(3):
            t = 1_764_000_000.0 + 60 * i
            log.insert_runs([NewRun("badshell", Trigger.SCHEDULE, 1, t, status=RunStatus.ERROR,
                                    finished_at=t, reason="shell not found")], host="h", boot_id="b")
            (run_id,) = log.insert_runs([NewRun("failing", Trigger.SCHEDULE, 1, t)], host="h", boot_id="b")
            log.mark_started(run_id, 4242, t, t)
            log.finish_run(run_id, RunStatus.FAILED, finished_at=t + 1, exit_code=1, reason="exit code 1")
    result = CliRunner(env={"COLUMNS": "200"}).invoke(cli.main, ["status", "--jobs", str(jobs), "--db", db])
    rows = {line.split()[0]: line.split() for line in result.output.splitlines() if line.split()}
    assert "0%" in rows["badshell"] and "0%" in rows["failing"]


def test_logs_since_shows_the_whole_window_and_a_cut_list_says_there_is_more(tmp_path):
    from cronsup.model import RunStatus, Trigger
    from cronsup.store import NewRun

    db = str(tmp_path / "runs.db")
    now = time.time()
    with SqliteStore.open(db) as log:
        ids = log.insert_runs([NewRun("noisy", Trigger.SCHEDULE, 1, now - 600 + i) for i in range(30)],
                              host="h", boot_id="b")
        for run_id in ids:
            log.finish_run(run_id, RunStatus.FAILED, finished_at=now, exit_code=1, reason="exit code 1")
    args = ["--jobs", str(tmp_path / "jobs"), "--db", db]
    runner = CliRunner(env={"COLUMNS": "200"})
    cut = runner.invoke(cli.main, ["logs", "--failed", "--json", *args])
    assert len(json.loads(cut.stdout)) == 20
    cut = runner.invoke(cli.main, ["logs", "--failed", *args])
    assert len(cut.stdout.splitlines()) == 21 and "there are more" in cut.stderr
    window = runner.invoke(cli.main, ["logs", "--failed", "--since", "1h", "--json", *args])
    assert len(json.loads(window.stdout)) == 30
    exact = runner.invoke(cli.main, ["logs", "--failed", "-n", "30", *args])
    assert len(exact.stdout.splitlines()) == 31 and "there are more" not in exact.stderr
