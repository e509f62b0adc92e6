"""The status as the daemon sends it whole: every record survives JSON exactly, and data of
another shape is refused, not half read."""

from __future__ import annotations

import dataclasses
import json

import pytest

from cronsup import report, wire
from cronsup.model import RunStatus, Trigger
from cronsup.store import DeliveryAttempt, Run, RunningVersion


def run(**kw) -> Run:
    fields = dict(id=7, job="backup", trigger=Trigger.RETRY, attempt=2, scheduled_for=1796183114.117701,
                  started_at=1796183115.5, finished_at=None, status=RunStatus.RUNNING, exit_code=None,
                  signal=None, pid=4242, pid_start=123456.78, host="web1", boot_id="b-1", reason=None,
                  cpu_s=0.001417, max_rss=None, output_truncated=None, output_pruned=False,
                  params=(("DAY", "2026-11-30"), ("MODE", "full")))
    fields.update(kw)
    return Run(**fields)


def full_status() -> report.Status:
    done = run(id=6, status=RunStatus.FAILED, finished_at=1796183116.25, exit_code=3, reason="exit code 3",
               max_rss=1 << 20, output_truncated=True, params=())
    job = report.JobStatus(
        name="backup", schedule="0 2 * * *", command="tar czf /b.tgz /srv <\"x\">", description="nightly <b>",
        enabled=True, paused=False, next_run=1796200000.0, last_run=run(), running=[run()],
        success_rate=0.95, median_s=1.5, last_finished=done, retry_at=1796183200.0, retry_attempt=2,
        retry_attempts=3, line=12, source="/etc/cronsup/jobs:12", user="www-data",
        alerts_failing=[DeliveryAttempt(9, "backup", "webhook", "https://hooks.example", 1796183117.0, False,
                                        "503 Service Unavailable", 1796183177.0)])
    bare = report.JobStatus(name="tick", schedule="@every 2s", command="true", description="", enabled=False,
                            paused=True, next_run=None, last_run=None, running=[], success_rate=None,
                            median_s=None)
    return report.Status(
        running=True, pid=99, started_at=1796180000.0, jobs_file="/etc/cronsup/jobs", config_error="line 4: bad",
        db_path="postgresql://cronsup@db/cronsup", jobs=[job, bare], has_log=True, stopped_at=None,
        last_seen=1796183118.0, ever_ran=True, version=RunningVersion("run log", 1796100000.0, 2),
        internal_errors=1, answering=True, cron={"root": "/", "sources": [{"path": "/etc/crontab"}],
                                                 "origins": {"backup": "/etc/crontab:3"}})


def through_json(value):
    return json.loads(json.dumps(wire.encode(value)))


def test_a_status_with_every_kind_of_field_comes_back_equal_and_renders_the_same():
    st = full_status()
    back = wire.decode(report.Status, through_json(st))
    assert back == st
    assert back.jobs[0].last_run.trigger is Trigger.RETRY and back.jobs[0].last_run.status is RunStatus.RUNNING
    assert back.jobs[0].last_run.params == (("DAY", "2026-11-30"), ("MODE", "full"))
    assert back.jobs[0].last_run.scheduled_for == 1796183114.117701  # exact, not rounded
    assert back.to_json() == st.to_json()


def test_data_of_another_shape_is_refused_with_a_wire_error():
    good = through_json(full_status())
    short = good[:-1]
    with pytest.raises(wire.WireError):
        wire.decode(report.Status, short)
    bad_status = through_json(full_status())
    bad_status[6][0][7][7] = "exploded"  # jobs[0].last_run.status
    with pytest.raises(wire.WireError):
        wire.decode(report.Status, bad_status)
    with pytest.raises(wire.WireError):
        wire.decode(report.Status, {"running": True})


def test_the_signature_changes_with_a_field_of_any_record_it_reaches():
    def records(*inner_fields):
        inner = dataclasses.make_dataclass("Inner", [("a", int), *inner_fields])
        return dataclasses.make_dataclass("Outer", [("inner", inner | None), ("items", list[inner])])

    assert wire.signature(records()) == wire.signature(records())
    assert wire.signature(records(("b", str))) != wire.signature(records())
    assert wire.signature(records(("a2", float))) != wire.signature(records(("a2", int)))
