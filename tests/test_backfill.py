"""`cronsup backfill` and `cronsup run --env` with the real daemon (SPEC section 8)."""

from __future__ import annotations

import datetime as dt
import json
import os
import pty
import signal
import subprocess
import sys
import zoneinfo

import pytest
from conftest import DaemonProcess, wait_until

from cronsup import control
from cronsup.store import SqliteStore

BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
# What each run prints: the CRONSUP_* variables the daemon gave it.
SHOW = 'echo "$CRONSUP_SCHEDULED_FOR $CRONSUP_TRIGGER $CRONSUP_ATTEMPT $CRONSUP_JOB $CRONSUP_RUN_ID"'


def hours(day: dt.date, zone: dt.tzinfo = BERLIN) -> list[str]:
    """Each hour boundary of the local day, as ISO with its offset: Berlin's offsets are whole
    hours, so `0 * * * *` fires at every one (23 on the spring change, 25 in the autumn)."""
    start = dt.datetime(day.year, day.month, day.day, tzinfo=zone).timestamp()
    nxt = day + dt.timedelta(days=1)
    end = dt.datetime(nxt.year, nxt.month, nxt.day, tzinfo=zone).timestamp()
    return [dt.datetime.fromtimestamp(start + k * 3600, dt.timezone.utc).astimezone(zone).isoformat()
            for k in range(int((end - start) // 3600))]


def backfill_runs(d: DaemonProcess, job: str) -> list:
    return [r for r in d.runs(job) if r.trigger in ("backfill", "retry")]


def backfill_state(d: DaemonProcess, backfill_id: int) -> str | None:
    with SqliteStore.open(str(d.db), readonly=True) as log:
        found = log.backfill(backfill_id)
    return found.state if found else None


@pytest.fixture
def hourly(daemon):
    daemon.write(f"""\
        [job.hourly]
        timezone = "Europe/Berlin"
        0 * * * * {SHOW}
        [job.after-hourly]
        after = ["hourly"]
        @after echo "after $CRONSUP_SCHEDULED_FOR $CRONSUP_TRIGGER"
        [job.ticker]
        @every 1h true
        """)
    return daemon.start()


def test_a_day_of_an_hourly_job_runs_24_times_oldest_first_each_with_its_scheduled_time(hourly):
    d = hourly
    result = d.cli("backfill", "hourly", "--from", "2026-11-29", "--to", "2026-11-30", "--max-parallel", "4", "--wait")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "24 of 24 scheduled times to run" in result.stdout
    assert "backfill 1 done: 24 succeeded, 0 failed" in result.stdout
    runs = backfill_runs(d, "hourly")
    assert [r.id for r in runs] == sorted(r.id for r in runs)  # started oldest first
    printed = [d.output_of(r.id).decode().split() for r in runs]
    assert [p[0] for p in printed] == hours(dt.date(2026, 11, 29))
    for run, (_, trigger, attempt, job, run_id) in zip(runs, printed):
        assert (trigger, attempt, job, run_id) == ("backfill", "1", "hourly", str(run.id))


def test_after_jobs_follow_each_backfilled_time_for_that_time(hourly):
    d = hourly
    result = d.cli("backfill", "hourly", "--from", "2026-11-29T00:00", "--to", "2026-11-29T04:00", "--wait")
    assert result.returncode == 0, result.stdout + result.stderr
    # With one place, each time's @after run ends before the next time starts: none skipped.
    after = d.runs("after-hourly")
    printed = [d.output_of(r.id).decode().split()[1:] for r in after]
    # In the dependent's own zone (the system's): compared as instants.
    assert [(dt.datetime.fromisoformat(t).timestamp(), trigger) for t, trigger in printed] == [
        (dt.datetime.fromisoformat(t).timestamp(), "after") for t in hours(dt.date(2026, 11, 29))[:4]]
    slots = backfill_runs(d, "hourly")
    assert all(s.finished_at <= a.started_at for s, a in zip(slots, after))
    assert all(a.finished_at <= s.started_at for a, s in zip(after, slots[1:]))


@pytest.mark.parametrize("day, count", [(dt.date(2026, 3, 29), 23), (dt.date(2026, 10, 25), 25)])
def test_a_day_with_a_dst_change_in_berlin_has_as_many_runs_as_wall_clock_hours(hourly, day, count):
    # 2026-03-29 02:00 CET becomes 03:00 CEST (no 02:00); 2026-10-25 03:00 CEST becomes
    # 02:00 CET (02:00 twice). `0 * * * *` follows the wall clock, as Debian's cron does.
    d = hourly
    nxt = day + dt.timedelta(days=1)
    result = d.cli("backfill", "hourly", "--from", day.isoformat(), "--to", nxt.isoformat(),
                   "--max-parallel", "8", "--wait")
    assert result.returncode == 0, result.stdout + result.stderr
    runs = backfill_runs(d, "hourly")
    expected = hours(day)
    assert len(expected) == count
    assert [d.output_of(r.id).decode().split()[0] for r in runs] == expected


def test_reprocess_none_reruns_nothing_and_failed_reruns_exactly_the_failed_times(daemon, tmp_path):
    ok = tmp_path / "ok"
    daemon.write(f"""\
        [job.flaky]
        timezone = "Europe/Berlin"
        0 * * * * {SHOW}; [ -e {ok} ] && exit 0; case "$CRONSUP_SCHEDULED_FOR" in *T0[3-5]:*) exit 1;; esac
        """)
    d = daemon.start()
    span = ("--from", "2026-11-29T00:00", "--to", "2026-11-29T12:00")
    first = d.cli("backfill", "flaky", *span, "--max-parallel", "4", "--wait")
    assert first.returncode == 1 and "9 succeeded, 3 failed" in first.stdout, first.stdout + first.stderr
    before = d.runs("flaky")
    failed = sorted(r.scheduled_for for r in before if r.status == "failed")
    assert len(failed) == 3

    again = d.cli("backfill", "flaky", *span)
    assert again.returncode == 0 and "nothing to run" in again.stdout
    dry = d.cli("backfill", "flaky", *span, "--reprocess", "all", "--dry-run")
    assert dry.returncode == 0 and dry.stdout.count("  run ") == 12 and "nothing was started" in dry.stdout
    assert len(d.runs("flaky")) == len(before)  # neither started anything

    ok.touch()
    rerun = d.cli("backfill", "flaky", *span, "--reprocess", "failed", "--wait")
    assert rerun.returncode == 0 and "3 of 12 scheduled times to run" in rerun.stdout, rerun.stdout
    new = [r for r in d.runs("flaky") if r.id > before[-1].id]
    assert sorted(r.scheduled_for for r in new) == failed
    assert {(r.attempt, r.status) for r in new} == {(2, "success")}


def test_max_parallel_3_never_has_more_than_3_running(daemon):
    daemon.write("""\
        [job.slow]
        timezone = "UTC"
        0 * * * * sleep 0.3
        """)
    d = daemon.start()
    result = d.cli("backfill", "slow", "--from", "2026-11-29T00:00", "--to", "2026-11-29T09:00",
                   "--max-parallel", "3", "--wait")
    assert result.returncode == 0, result.stdout + result.stderr
    runs = backfill_runs(d, "slow")
    assert len(runs) == 9
    # Sweep the recorded intervals: an end at the same instant as a start comes first.
    events = sorted([(r.started_at, 1) for r in runs] + [(r.finished_at, -1) for r in runs])
    running = most = 0
    for _, step in events:
        running += step
        most = max(most, running)
    assert most == 3


def test_wait_alone_follows_the_backfill_going_to_its_end(daemon):
    daemon.write("""\
        [job.slow]
        timezone = "UTC"
        0 * * * * sleep 0.4
        """)
    d = daemon.start()
    started = d.cli("backfill", "slow", "--from", "2026-11-29T00:00", "--to", "2026-11-29T08:00")
    assert started.returncode == 0 and "cronsup backfill slow --wait" in started.stdout
    follow = d.cli("backfill", "slow", "--wait")  # 8 x 0.4 s: it is still going
    assert follow.returncode == 0 and "backfill 1 done: 8 succeeded, 0 failed" in follow.stdout, follow.stderr
    assert len(backfill_runs(d, "slow")) == 8
    after = d.cli("backfill", "slow", "--wait")
    assert after.returncode == 2 and "no backfill of slow is going" in after.stderr


def test_a_restart_in_the_middle_goes_on_where_it_stopped_without_running_a_time_twice(daemon):
    daemon.write("""\
        [job.slow]
        timezone = "UTC"
        0 * * * * sleep 0.25
        """)
    d = daemon.start()
    started = d.cli("backfill", "slow", "--from", "2026-11-29T00:00", "--to", "2026-11-29T16:00")
    assert started.returncode == 0, started.stderr
    wait_until(lambda: len([r for r in d.runs("slow") if r.status == "success"]) >= 3, 20,
               what="three slots done")
    assert d.stop() == 0
    at_stop = d.runs("slow")
    assert len(at_stop) < 16
    d.start()
    wait_until(lambda: backfill_state(d, 1) == "done", 30, what="the backfill to end")
    runs = d.runs("slow")
    times = [r.scheduled_for for r in runs]
    assert len(times) == len(set(times)) == 16  # every time once: none run again
    assert times == sorted(times)
    assert [r.id for r in runs[:len(at_stop)]] == [r.id for r in at_stop]
    # Only the run the stop interrupted may have failed.
    assert [r.status for r in runs if r.status != "success"] in ([], ["killed"])


def test_cancel_stops_starting_new_times_and_lets_the_running_one_end(daemon):
    daemon.write("""\
        [job.slow]
        timezone = "UTC"
        0 * * * * sleep 0.5
        """)
    d = daemon.start()
    assert d.cli("backfill", "slow", "--from", "2026-11-29", "--to", "2026-11-30").returncode == 0
    wait_until(lambda: d.runs("slow"), 10, what="the first slot to start")
    cancel = d.cli("backfill", "--cancel", "slow")
    assert cancel.returncode == 0 and "cancelled" in cancel.stdout, cancel.stderr
    assert backfill_state(d, 1) == "cancelled"
    wait_until(lambda: all(r.status != "running" for r in d.runs("slow")), 10, what="the running slot to end")
    count = len(d.runs("slow"))
    assert count < 24
    again = d.cli("backfill", "--cancel", "slow")  # the daemon holds no queue of it any more
    assert again.returncode == 2 and "no backfill of slow is going" in again.stderr
    assert len(d.runs("slow")) == count


def test_backfill_refusals_say_why(hourly, tmp_path):
    d = hourly
    cases = [
        (("ticker", "--from", "2026-11-29", "--to", "2026-11-30"), "an @every job runs at intervals"),
        (("after-hourly", "--from", "2026-11-29", "--to", "2026-11-30"), "an @after job runs when"),
        (("hourly", "--from", "2026-11-30", "--to", "2026-11-29"), "--to must be after --from"),
        (("hourly", "--from", "last week", "--to", "2026-11-29"), "--from 'last week' is not an ISO 8601"),
        (("hourly", "--from", "2025-01-01", "--to", "2026-11-29"), "add --yes"),
        (("hourly", "--from", "2026-11-29"), "needs --from TIME and --to TIME"),
        (("nosuch", "--from", "2026-11-29", "--to", "2026-11-30"), "no job named 'nosuch'"),
    ]
    for args, reason in cases:
        result = d.cli("backfill", *args)
        assert result.returncode == 2 and reason in result.stderr, (args, result.stderr)
    assert d.runs("hourly") == []


def test_backfill_without_a_daemon_exits_3_and_says_the_dry_run_works_without_one(tmp_path):
    d = DaemonProcess(tmp_path)
    d.write("[job.hourly]\n0 * * * * true\n")
    result = d.cli("backfill", "hourly", "--from", "2026-11-29", "--to", "2026-11-30")
    assert result.returncode == 3 and "no daemon is running" in result.stderr and "--dry-run" in result.stderr
    dry = d.cli("backfill", "hourly", "--from", "2026-11-29", "--to", "2026-11-29T03:00", "--dry-run")
    assert dry.returncode == 0 and dry.stdout.count("  run   no run yet") == 3, dry.stdout + dry.stderr


def test_wait_on_a_terminal_draws_a_progress_bar(hourly):
    d = hourly
    main, sub = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cronsup", "backfill", "hourly", "--from", "2026-11-29T00:00",
         "--to", "2026-11-29T06:00", "--wait", "--jobs", str(d.jobs), "--db", str(d.db)],
        stdout=sub, stderr=sub, cwd=str(d.tmp))
    os.close(sub)
    out = b""
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:  # the terminal's other end closed
            break
        if not chunk:
            break
        out += chunk
    os.close(main)
    assert proc.wait(30) == 0
    text = out.decode()
    assert "\r[" in text and "6 done, 0 failed, 0 left" in text


# -- run parameters and the CRONSUP_* variables --------------------------------------------


def test_run_env_is_in_the_jobs_environment_and_in_logs_run_json(daemon):
    daemon.write("""\
        CRONSUP_JOB=forged
        DAY=from-the-file
        [job.report]
        @every 1h echo "DAY=$DAY JOB=$CRONSUP_JOB TRIGGER=$CRONSUP_TRIGGER"
        """)
    d = daemon.start()
    result = d.cli("run", "report", "--env", "DAY=2026-11-30", "--env", "MODE=a b", "--wait")
    assert result.returncode == 0, result.stderr
    run = [r for r in d.runs("report") if r.trigger == "manual"][-1]
    assert d.output_of(run.id).decode() == "DAY=2026-11-30 JOB=report TRIGGER=manual\n"
    shown = json.loads(d.cli("logs", "--run", str(run.id), "--json", check=True).stdout)
    assert shown["params"] == {"DAY": "2026-11-30", "MODE": "a b"}
    assert "params:        DAY=2026-11-30 MODE='a b'" in d.cli("logs", "--run", str(run.id), check=True).stdout


def test_a_retry_carries_the_scheduled_time_and_parameters_of_the_run_it_retries(daemon):
    daemon.write(f"""\
        [job.flaky]
        retries = 1
        retry_delay = "0.1s"
        retry_jitter = false
        @every 1h {SHOW}; echo "$DAY"; [ "$CRONSUP_ATTEMPT" = 2 ]
        """)
    d = daemon.start()
    assert d.cli("run", "flaky", "--env", "DAY=monday", "--wait").returncode == 0
    first, second = [r for r in d.runs("flaky") if r.trigger in ("manual", "retry")]
    one, two = (d.output_of(r.id).decode().split() for r in (first, second))
    assert one[0] == two[0] == dt.datetime.fromtimestamp(first.scheduled_for, dt.timezone.utc) \
        .astimezone().isoformat(timespec="seconds")
    assert (one[1:3], two[1:3]) == (["manual", "1"], ["retry", "2"])
    assert one[-1] == two[-1] == "monday" and second.params == (("DAY", "monday"),)


@pytest.mark.parametrize("arg, reason", [
    ("PATH=/tmp", "PATH is set by cron"),
    ("HOME=/tmp", "HOME is set by cron"),
    ("MAILTO=me", "MAILTO is set by cron"),
    ("CRONSUP_SCHEDULED_FOR=x", "CRONSUP_* variables are set by cronsup"),
    ("DAY", "is not KEY=VALUE"),
    ("=x", "a parameter needs a name"),
    ("2DAY=x", "is not a valid variable name"),
    ("DA-Y=x", "is not a valid variable name"),
])
def test_run_env_refuses_names_cron_or_cronsup_own_and_malformed_pairs(daemon, arg, reason):
    daemon.write("[job.report]\n@every 1h true\n")
    result = daemon.cli("run", "report", "--env", arg)  # refused before any daemon is asked
    assert result.returncode == 2 and reason in result.stderr, result.stderr


def test_the_control_socket_checks_the_type_and_content_of_a_runs_parameters(daemon):
    daemon.write("[job.report]\n@every 1h true\n")
    d = daemon.start()
    sock = str(d.db) + ".sock"
    for fields, reason in [({"env": {"DAY": "a\0b"}}, "NUL byte"), ({"env": {"PATH": "/x"}}, "PATH"),
                           ({"env": ["DAY=1"]}, "env must be a dict"), ({"env": {"DAY": 1}}, "must be a string"),
                           ({"env": {"D": "x" * 5000}}, "larger than 4096 bytes"),
                           ({"max_parallel": 2}, "unknown fields")]:
        with pytest.raises(control.ControlError, match=reason):
            control.request(sock, "run", "report", fields=fields)
    for fields, reason in [({"from": "2026-11-29", "to": "2026-11-30", "max_parallel": True}, "max_parallel must be a int"),
                           ({"from": 20261129}, "from must be a str")]:
        with pytest.raises(control.ControlError, match=reason):
            control.request(sock, "backfill", "report", fields=fields)
    assert d.runs("report") == []


def test_a_scheduled_run_knows_its_job_trigger_attempt_and_scheduled_time(daemon):
    daemon.write(f"[job.tick]\n@every 1s {SHOW}\n")
    d = daemon.start()
    run = d.finished("tick", 1)[0]
    when, trigger, attempt, job, run_id = d.output_of(run.id).decode().split()
    assert (trigger, attempt, job, run_id) == ("schedule", "1", "tick", str(run.id))
    assert dt.datetime.fromisoformat(when).timestamp() == int(run.scheduled_for)


def test_a_catch_up_run_carries_the_time_of_the_fire_it_stands_for():
    from cronsup import jobsfile
    from cronsup.model import Trigger
    from cronsup.processes import _run_env
    from cronsup.supervisor import Fire, Start

    spec = jobsfile.parse('[job.nightly]\ntimezone = "Europe/Berlin"\n0 2 * * * true\n', "jobs").jobs[0]
    missed = dt.datetime(2026, 11, 29, 2, tzinfo=BERLIN).timestamp()
    env = _run_env(Start(spec, Fire(Trigger.CATCHUP, 1, missed)), 41)
    assert env == {"CRONSUP_JOB": "nightly", "CRONSUP_RUN_ID": "41", "CRONSUP_ATTEMPT": "1",
                   "CRONSUP_TRIGGER": "catchup", "CRONSUP_SCHEDULED_FOR": "2026-11-29T02:00:00+01:00"}


def test_run_env_that_cannot_fit_one_request_is_refused_with_the_size(daemon):
    daemon.write("[job.report]\n@every 1h true\n")
    args = [a for k in range(8) for a in ("--env", f"K{k}={'x' * 600}")]
    result = daemon.cli("run", "report", *args)
    assert result.returncode == 2 and "the control socket takes at most 4,096" in result.stderr
