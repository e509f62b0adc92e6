"""Scheduling decisions across real daemon restarts and stalls: catch-up, @every counting,
pending retries. A test moves the daemon's wall clock with CRONSUP_TEST_CLOCK_OFFSET instead
of waiting for real minutes."""

import datetime as dt
import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time

from click.testing import CliRunner

from conftest import wait_until
from cronsup import cli, clock, fmt, jobsfile
from cronsup.store.sqlite import schema as runlog_module
from cronsup.store import JobRow, SqliteStore


def clock_at(wall: float) -> dict[str, str]:
    """The environment that makes a process started now read `wall` on its wall clock."""
    return {"CRONSUP_TEST_CLOCK_OFFSET": repr(wall - time.time())}


def status_json(daemon, env: dict[str, str] | None = None) -> dict:
    result = subprocess.run([sys.executable, "-m", "cronsup", "status", "--json", "--jobs",
                             str(daemon.jobs), "--db", str(daemon.db)], capture_output=True,
                            text=True, timeout=30, env={**os.environ, **(env or {})})
    assert result.returncode in (0, 1, 3), result.stderr
    return json.loads(result.stdout)


def job_json(daemon, name: str) -> dict:
    return next(j for j in status_json(daemon)["jobs"] if j["name"] == name)


def test_catchup_across_a_real_restart_runs_last_once_and_all_oldest_first(daemon):
    daemon.write("""\
        [job.none]
        * * * * * true
        [job.last]
        catchup = "last"
        * * * * * true
        [job.all]
        catchup = "all"
        * * * * * true
        """)
    base = math.ceil(time.time() / 60) * 60 + 3600  # a whole minute of the daemon's clock
    daemon.start(env=clock_at(base + 12)).stop()  # "stopped at hh:57:12"
    daemon.start(env=clock_at(base + 139))  # "started at hh:59:19"
    minute = lambda n: base + 60 * n  # noqa: E731
    daemon.finished("all", 2)
    daemon.finished("last")
    daemon.finished("none")
    by_job = {name: [(r.scheduled_for, r.trigger, r.status) for r in daemon.runs(name)]
              for name in ("none", "last", "all")}
    daemon.stop()
    assert by_job["last"] == [(minute(1), "schedule", "missed"), (minute(2), "schedule", "success")]
    assert by_job["none"] == by_job["last"]
    assert by_job["all"] == [(minute(1), "catchup", "success"), (minute(2), "schedule", "success")]
    missed = daemon.runs("last")[0]
    assert missed.reason.startswith("the daemon was not running at ")


def test_every_counts_from_the_last_start_across_real_restarts(daemon):
    daemon.write("""\
        [job.hourly]
        @every 1h echo ran
        """)
    t0 = time.time()
    daemon.start(env=clock_at(t0))
    assert daemon.cli("run", "hourly", "--wait").returncode == 0
    (first,) = daemon.runs("hourly")
    daemon.stop()
    # Half an hour later: the next run is an hour after the last start, not after this start.
    daemon.start(env=clock_at(t0 + 1800))
    next_run = dt.datetime.fromisoformat(job_json(daemon, "hourly")["next_run"]).timestamp()
    assert abs(next_run - (first.started_at + 3600)) < 1  # JSON times are to the second
    daemon.stop()
    # Restarted two seconds before that: it runs then, as scheduled.
    daemon.start(env=clock_at(first.started_at + 3600 - 2))
    runs = daemon.finished("hourly", 2)
    assert runs[1].trigger == "schedule"
    assert abs(runs[1].scheduled_for - (first.started_at + 3600)) < 0.01


def test_a_pending_retry_shows_in_status(daemon):
    daemon.write("""\
        [job.flaky]
        retries = 2
        retry_delay = "10m"
        retry_jitter = false
        @every 1h exit 1
        """)
    daemon.start()
    assert job_json(daemon, "flaky")["retry_at"] is None
    daemon.cli("run", "flaky", check=True)
    (run,) = daemon.finished("flaky")
    job = wait_until(lambda: (j := job_json(daemon, "flaky"))["retry_at"] and j, what="retry_at")
    retry_at = dt.datetime.fromisoformat(job["retry_at"]).timestamp()
    assert abs(retry_at - (run.finished_at + 600)) < 1 and job["retry_attempt"] == 2
    text = daemon.cli("status", check=True).stdout
    local = dt.datetime.fromtimestamp(retry_at)
    # Today's retry shows its time; one after midnight its day too (a test run at 23:55).
    shown = local.strftime("%H:%M:%S") if local.date() == dt.date.today() else fmt.when(retry_at, clock.wall())
    assert f"retry 2 of 3 at {shown}" in text
    # Paused, the retry is dropped and status says paused.
    daemon.cli("pause", "flaky", check=True)
    wait_until(lambda: job_json(daemon, "flaky")["retry_at"] is None, what="the retry dropped")


def test_a_stall_leaves_a_row_for_every_fire_and_says_why(daemon):
    daemon.write("""\
        [job.none]
        @every 1s true
        [job.all]
        catchup = "all"
        @every 1s true
        [job.slow]
        timeout = "1s"
        @every 1h sleep 30
        """)
    daemon.start()
    daemon.finished("none", 2)
    daemon.finished("all", 2)
    assert daemon.cli("run", "slow").returncode == 0
    wait_until(lambda: any(r.status == "running" for r in daemon.runs("slow")), what="slow to run")
    daemon.send(signal.SIGSTOP)
    time.sleep(3.5)
    daemon.send(signal.SIGCONT)
    (slow,) = wait_until(lambda: [r for r in daemon.runs("slow") if r.status == "timeout"],
                         what="the timeout")
    # Wait until the catch-ups are done: two fires after the stall have run.
    resumed = time.time()
    wait_until(lambda: sum(r.scheduled_for > resumed for r in daemon.runs("all")
                           if r.status == "success") >= 2, what="runs after the stall")
    daemon.stop()
    assert slow.reason.startswith("timed out after 1.0s (stopped at ")
    assert slow.reason.endswith(": the daemon was stalled)")
    for name in ("none", "all"):
        runs = sorted(daemon.runs(name), key=lambda r: r.scheduled_for)
        times = [r.scheduled_for for r in runs]
        gaps = [b - a for a, b in zip(times, times[1:])]
        assert all(abs(g - 1) < 0.01 for g in gaps), (name, gaps)  # no fire without a row
        assert all(r.status in ("success", "missed", "skipped") for r in runs)
    missed = [r for r in daemon.runs("none") if r.status == "missed"]
    assert len(missed) >= 2 and all("the daemon was stalled (no CPU or suspended)" in r.reason
                                    for r in missed)
    assert [r for r in daemon.runs("all") if r.status == "missed"] == []
    assert sum(r.trigger == "catchup" for r in daemon.runs("all")) >= 2


def test_the_migration_adds_the_retry_columns_to_an_old_run_log(tmp_path):
    db = str(tmp_path / "runs.db")
    conn = sqlite3.connect(db)
    for statement in runlog_module.MIGRATIONS[0]:
        conn.execute(statement)
    conn.execute("INSERT INTO jobs VALUES (0, 'a', '@daily', 'true', '', 5.0, 1, 3)")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    with SqliteStore.open(db) as log:
        assert log.jobs() == [JobRow("a", "@daily", "true", "", 5.0, True, 3)]
        log.update_retries({"a": (7.0, 2, 3)})
        assert log.jobs()[0].retry_at == 7.0 and log.jobs()[0].retry_attempts == 3


# -- lines that never fire (issue 8) -----------------------------------------------------------

def test_a_never_firing_line_is_kept_with_a_warning():
    jf = jobsfile.parse("# off for now\n[job.off]\n0 0 30 2 * /bin/x\n@daily /bin/y\n", "jobs")
    assert [j.name for j in jf.jobs] == ["off", "y"]
    (warning,) = jf.warnings
    assert (warning.path, warning.line) == ("jobs", 3)
    assert str(warning) == ("jobs:3: warning: the schedule '0 0 30 2 *' never fires: no month it "
                            "names has those days; the job is kept but never runs by its schedule")


def test_check_and_next_agree_on_a_line_that_never_fires(tmp_path):
    path = tmp_path / "jobs"
    path.write_text("0 0 31 2 * /bin/x\n")
    runner = CliRunner()
    checked = runner.invoke(cli.main, ["check", str(path)])
    assert checked.exit_code == 0 and f"{path}: 1 job, no errors" in checked.stdout
    assert f"{path}:1: warning: the schedule '0 0 31 2 *' never fires" in checked.stderr
    nexted = runner.invoke(cli.main, ["next", "0 0 31 2 *"])
    assert nexted.exit_code == 0 and nexted.stdout == ""
    assert "the schedule '0 0 31 2 *' never fires: no month it names has those days" in nexted.stderr
    by_job = runner.invoke(cli.main, ["next", "--jobs", str(path), "x"])
    assert by_job.exit_code == 0 and by_job.stdout == "" and "never fires" in by_job.stderr


def test_the_daemon_runs_a_file_with_a_never_firing_line_and_status_says_never(daemon):
    daemon.write("""\
        [job.off]
        0 0 30 2 * echo never
        [job.on]
        @every 1h echo on
        """)
    daemon.start()
    off = job_json(daemon, "off")
    assert off["next_run"] is None and job_json(daemon, "on")["next_run"] is not None
    row = next(line for line in daemon.cli("status", check=True).stdout.splitlines()
               if line.startswith("off "))
    assert row.split()[1:7] == ["0", "0", "30", "2", "*", "never"]
    assert "jobs:2: warning: the schedule '0 0 30 2 *' never fires" in daemon.output()
    daemon.stop()
    # With the daemon stopped, status reads the file: the same answer.
    row = next(line for line in daemon.cli("status").stdout.splitlines() if line.startswith("off "))
    assert "never" in row.split()
