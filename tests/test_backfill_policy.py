"""Backfill policy, pure: the range's times, what happens to each, and the supervisor's queue."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
from test_supervisor import World, at

from cronsup import backfill, params, schedule
from cronsup.backfill import BackfillError, Reprocess
from cronsup.model import RunStatus, Trigger
from cronsup.store import Run
from cronsup.supervisor import EndBackfill, Start

BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")


def run(id_: int, t: float, status: RunStatus, attempt: int = 1) -> Run:
    return Run(id_, "job", Trigger.SCHEDULE, attempt, t, t, t, status, 0, None, None, None, "h", "b",
               None, None, None, None)


def local(*args) -> float:
    return dt.datetime(*args, tzinfo=BERLIN).timestamp()


def test_a_fixed_time_job_runs_once_on_both_dst_days_as_cron_does():
    # Berlin: 2026-03-29 02:00 CET -> 03:00 CEST; 2026-10-25 03:00 CEST -> 02:00 CET.
    cron = schedule.parse_cron("30 2 * * *")
    spring = backfill.times(cron, BERLIN, local(2026, 3, 29), local(2026, 3, 30))
    assert [params.scheduled_text(t, BERLIN) for t in spring] == ["2026-03-29T03:00:00+02:00"]
    autumn = backfill.times(cron, BERLIN, local(2026, 10, 25), local(2026, 10, 26))
    assert [params.scheduled_text(t, BERLIN) for t in autumn] == ["2026-10-25T02:30:00+02:00"]


def test_the_range_includes_from_and_excludes_to_and_counts_without_listing():
    cron = schedule.parse_cron("0 * * * *")
    start, end = local(2026, 11, 29, 3), local(2026, 11, 29, 6)
    assert backfill.times(cron, BERLIN, start, end) == [start, start + 3600, start + 7200]
    assert backfill.count(cron, BERLIN, start, end) == 3
    assert backfill.count(cron, BERLIN, local(2026, 10, 25), local(2026, 10, 26)) == 25


def test_times_are_read_in_the_jobs_zone_unless_they_carry_an_offset():
    assert backfill.parse_time("2026-11-29", BERLIN) == local(2026, 11, 29)
    assert backfill.parse_time("2026-11-29T14:30", BERLIN) == local(2026, 11, 29, 14, 30)
    assert backfill.parse_time("2026-11-29 14:30", BERLIN) == local(2026, 11, 29, 14, 30)
    assert backfill.parse_time("2026-11-29T14:30+00:00", BERLIN) == local(2026, 11, 29, 15, 30)
    with pytest.raises(BackfillError, match="--to 'tomorrow' is not an ISO 8601"):
        backfill.parse_time("tomorrow", BERLIN, "--to")


def test_a_range_over_10000_times_needs_confirming_and_an_empty_one_is_refused():
    cron = schedule.parse_cron("* * * * *")
    start = local(2026, 11, 1)
    with pytest.raises(BackfillError, match="14,400 scheduled times, more than 10,000: add --yes"):
        backfill.check_range(cron, BERLIN, start, start + 10 * 86400, confirmed=False)
    assert backfill.check_range(cron, BERLIN, start, start + 10 * 86400, confirmed=True) == 14400
    with pytest.raises(BackfillError, match="no scheduled time in that range"):
        backfill.check_range(schedule.parse_cron("0 0 1 1 *"), BERLIN, start, start + 86400, confirmed=False)


@pytest.mark.parametrize("policy, expected", [
    (Reprocess.NONE, [True, False, False, True, False, True]),
    (Reprocess.FAILED, [True, False, True, True, False, True]),
    (Reprocess.ALL, [True, True, True, True, False, True]),
])
def test_each_reprocess_policy_decides_by_the_latest_attempt_at_each_time(policy, expected):
    t = [local(2026, 11, 29, h) for h in range(6)]
    runs = [
        run(1, t[1], RunStatus.SUCCESS),
        run(2, t[2], RunStatus.SUCCESS), run(3, t[2], RunStatus.TIMEOUT, attempt=2),  # the retry failed
        run(4, t[3], RunStatus.MISSED),
        run(5, t[4], RunStatus.RUNNING),
        run(6, t[5], RunStatus.FAILED), run(7, t[5], RunStatus.SKIPPED, attempt=2),
    ]
    slots = backfill.plan(t, runs, policy)
    got = [s.run for s in slots]
    # t[5]: its latest attempt was skipped, so it never ran to an end: every policy runs it.
    assert got == expected
    assert [s.attempt for s in slots] == [1, 2, 3, 2, 2, 3]
    assert slots[0].why == "no run yet" and slots[4].why == "running now (run 5)"


def test_jobs_without_a_calendar_are_refused_with_the_reason():
    from cronsup import jobsfile

    jf = jobsfile.parse("@every 5m true\n@reboot true\n", "jobs")
    for spec, why in zip(jf.jobs, ["@every job runs at intervals", "@reboot job runs once per boot"]):
        with pytest.raises(BackfillError, match=why):
            backfill.calendar(spec)


# -- the supervisor's queue ------------------------------------------------------------------

JOBS = """\
    [job.hourly]
    overlap = "{overlap}"
    timezone = "UTC"
    0 * * * * true
    [job.dep]
    after = ["hourly"]
    @after true
    """
T0 = at(2026, 11, 30, 10, 30)
SLOTS = [(at(2026, 11, 29, h), 1) for h in range(5)]


def world(overlap: str = "skip") -> World:
    return World(JOBS.format(overlap=overlap), T0)


def backfill_starts(w: World) -> list[tuple[int, Start]]:
    return [(i, s) for i, s in w.starts if s.fire.backfill and s.job.name == "hourly"]


def test_the_queue_starts_oldest_first_at_most_max_parallel_and_ends_done():
    w = world()
    w.sup.add_backfill(7, "hourly", list(reversed(SLOTS)), max_parallel=2)
    w.tick()
    assert [s.fire.scheduled_for for _, s in backfill_starts(w)] == [t for t, _ in SLOTS[:2]]
    assert all(s.fire.trigger is Trigger.BACKFILL for _, s in w.starts)
    ends = []
    while w.running:
        run_id = min(i for i in w.running if w.running[i].job.name == "hourly")
        w.finish(run_id)
        actions, _ = w.sup.tick(w.now)
        ends += [a for a in actions if isinstance(a, EndBackfill)]
        w.do([a for a in actions if not isinstance(a, EndBackfill)])
        assert sum(1 for s in w.running.values() if s.fire.backfill) <= 2
        for dep in [i for i, s in w.running.items() if s.job.name == "dep"]:
            w.finish(dep)
    assert [s.fire.scheduled_for for _, s in backfill_starts(w)] == [t for t, _ in SLOTS]
    assert ends == [EndBackfill(7, "hourly", "done")] and "hourly" not in w.sup.backfills


def test_a_dependent_follows_each_slot_for_that_slots_time():
    w = world()
    w.sup.add_backfill(1, "hourly", SLOTS[:2], max_parallel=1)
    w.tick()
    first = backfill_starts(w)[0][0]
    w.finish(first)
    dep = [s for _, s in w.starts if s.job.name == "dep"]
    assert [(s.fire.trigger, s.fire.scheduled_for) for s in dep] == [(Trigger.AFTER, SLOTS[0][0])]


def test_slots_wait_while_a_scheduled_run_runs_unless_overlap_allows():
    for overlap, waits in (("skip", True), ("queue", True), ("allow", False)):
        w = world(overlap)
        w.do(w.sup.run_now("hourly", w.now))  # the job's own run, going
        w.sup.add_backfill(1, "hourly", SLOTS, max_parallel=3)
        w.tick()
        assert bool(backfill_starts(w)) is not waits, overlap
        if waits:
            w.finish(w.starts[0][0])
            w.tick()
            assert len(backfill_starts(w)) == 3


def test_a_scheduled_run_meets_running_slots_under_its_overlap_policy():
    w = world("skip")
    w.sup.add_backfill(1, "hourly", SLOTS, max_parallel=1)
    w.tick()
    w.wall, w.mono = at(2026, 11, 30, 11), w.mono + 1800
    w.tick()
    skipped = [r for r in w.records if r.fire.trigger is Trigger.SCHEDULE]
    assert [r.status for r in skipped] == [RunStatus.SKIPPED]


def test_a_failed_slots_retry_goes_back_to_the_queue_and_keeps_the_backfill_going():
    w = World(JOBS.format(overlap="skip").replace('timezone = "UTC"', 'timezone = "UTC"\nretries = 1\n'
                                                    'retry_delay = "1s"\nretry_jitter = false'), T0)
    w.sup.add_backfill(1, "hourly", SLOTS[:1], max_parallel=1)
    w.tick()
    status, reason = w.finish(w.starts[0][0], code=3)
    assert status is RunStatus.FAILED and "retrying" in reason
    actions, _ = w.sup.tick(w.now)
    assert not any(isinstance(a, EndBackfill) for a in actions)  # a retry is owed
    w.advance(2)
    retry = w.starts[-1][1]
    assert (retry.fire.trigger, retry.fire.attempt, retry.fire.scheduled_for, retry.fire.backfill) == \
        (Trigger.RETRY, 2, SLOTS[0][0], 1)


def test_cancel_drops_the_slots_not_started_and_a_removed_job_ends_its_backfill():
    w = world()
    w.sup.add_backfill(1, "hourly", SLOTS, max_parallel=1)
    w.tick()
    assert len(w.sup.cancel_backfill("hourly").slots) == 4
    w.finish(w.starts[0][0])
    w.tick()
    assert len(backfill_starts(w)) == 1 and w.sup.cancel_backfill("hourly") is None

    w = world()
    w.sup.add_backfill(2, "hourly", SLOTS, max_parallel=1)
    from cronsup import jobsfile

    w.sup.reload(jobsfile.parse("[job.other]\n@every 1h true\n", "jobs"), w.now)
    actions, _ = w.sup.tick(w.now)
    assert [a for a in actions if isinstance(a, EndBackfill)] == [
        EndBackfill(2, "hourly", "cancelled", "the job is no longer in the jobs file")]


def test_with_one_place_the_next_time_waits_for_the_dependents_of_the_last():
    w = world()
    w.sup.add_backfill(1, "hourly", SLOTS[:2], max_parallel=1)
    w.tick()
    w.finish(backfill_starts(w)[0][0])
    w.tick()
    dep = [(i, s) for i, s in w.starts if s.job.name == "dep"]
    assert len(dep) == 1 and len([1 for _, s in w.starts if s.job.name == "hourly"]) == 1
    w.finish(dep[0][0])
    w.tick()
    assert [s.fire.scheduled_for for _, s in w.starts if s.job.name == "hourly"] == [t for t, _ in SLOTS[:2]]


def test_a_time_run_again_at_attempt_3_still_gets_all_its_retries():
    w = World(JOBS.format(overlap="skip").replace('timezone = "UTC"', 'timezone = "UTC"\nretries = 1\n'
                                                    'retry_delay = "1s"\nretry_jitter = false'), T0)
    w.sup.add_backfill(1, "hourly", [(SLOTS[0][0], 3)], max_parallel=1)
    w.tick()
    status, reason = w.finish(w.starts[0][0], code=3)
    assert "retrying in 1.0s (attempt 4 of 4)" in reason
    w.advance(2)
    assert w.finish(w.starts[-1][0], code=3)[1] == "exit code 3"  # its one retry was the last
