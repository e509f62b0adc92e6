"""Backfill policy: a range's scheduled times, what to do with each, and the queue of slots. Pure.

The supervisor runs the queue (`Supervisor.add_backfill`); the daemon records it first, so a
restarted daemon goes on with the slots that have no run yet.
"""

from __future__ import annotations

import datetime as dt
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from cronsup import schedule
from cronsup.model import AfterJobs, Cron, Every, JobSpec, Reboot, RunStatus

if TYPE_CHECKING:
    from cronsup.store.records import Run
    from cronsup.supervisor import Fire

# A range with more slots than this needs --yes: a typo in a year is 500,000 minutes.
CONFIRM_OVER = 10_000
# And none with more than this, confirmed or not: the daemon lists, plans and records the
# slots in its loop, ~4 s for 100,000 on a loaded machine (bench/RESULTS.md), while no job starts.
MAX_SLOTS = 100_000
MAX_PARALLEL = 64


class Reprocess(StrEnum):
    """Which scheduled times of the range run again when they already have a run."""

    NONE = "none"  # only times that never ran (no run, or only skipped/missed rows)
    FAILED = "failed"  # and times whose last run did not succeed
    ALL = "all"  # every time, whatever ran before


class BackfillError(ValueError):
    """A backfill that cannot be done as asked; the message says why."""


@dataclass(frozen=True)
class Slot:
    """One scheduled time of the range and what the backfill does with it."""

    scheduled_for: float
    run: bool
    attempt: int  # the attempt number its run gets (the unique key's third part)
    why: str  # "no run yet", "succeeded (run 12)", ...


@dataclass
class Queue:
    """A backfill being run: its slots not yet started, oldest first."""

    id: int
    job: str
    slots: deque[Fire] = field(default_factory=deque)
    max_parallel: int = 1


def calendar(spec: JobSpec) -> Cron:
    """The job's cron schedule; BackfillError for jobs that have no calendar."""
    sched = spec.schedule
    if isinstance(sched, Cron):
        return sched
    what = {Every: "an @every job runs at intervals counted from its last run, not at times of a calendar",
            AfterJobs: "an @after job runs when the jobs it follows succeed; backfill those and it follows",
            Reboot: "a @reboot job runs once per boot, not at times of a calendar"}
    raise BackfillError(f"{spec.name} cannot be backfilled: {what[type(sched)]}")


def parse_time(text: str, zone: dt.tzinfo, what: str = "--from") -> float:
    """An ISO 8601 date or time, in `zone` unless it carries an offset, as epoch seconds.

    A date alone is its midnight: `--from 2026-11-29 --to 2026-11-30` is all of 29 November.

    >>> import zoneinfo
    >>> parse_time("2026-11-29", zoneinfo.ZoneInfo("Europe/Berlin"))
    1795906800.0
    """
    text = text.strip()
    try:
        if len(text) == 10:
            day = dt.date.fromisoformat(text)
            value = dt.datetime(day.year, day.month, day.day)
        else:
            value = dt.datetime.fromisoformat(text.replace(" ", "T", 1))
    except ValueError:
        raise BackfillError(f"{what} {text!r} is not an ISO 8601 date or time, such as 2026-11-29, "
                            "2026-11-29T14:00 or 2026-11-29T14:00+01:00") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)
    return value.timestamp()


def count(cron: Cron, zone: dt.tzinfo, start: float, end: float) -> int:
    """How many scheduled times fall in [start, end), without listing them."""
    # Fires are on whole minutes: (start - 0.5, end - 0.5] holds the same ones as [start, end).
    return schedule.count_fires(cron, start - 0.5, end - 0.5, zone)


def times(cron: Cron, zone: dt.tzinfo, start: float, end: float) -> list[float]:
    """The job's scheduled times in [start, end), oldest first, by cron's DST rules (a
    skipped time runs at the change, a repeated hour's fixed times once)."""
    found = []
    t = schedule.next_fire(cron, dt.datetime.fromtimestamp(start - 0.5, zone), zone)
    while t is not None and (ts := t.timestamp()) < end:
        found.append(ts)
        t = schedule.next_fire(cron, t, zone)
    return found


def check_range(cron: Cron, zone: dt.tzinfo, start: float, end: float, confirmed: bool) -> int:
    """The number of slots in [start, end); BackfillError for an empty or too large range."""
    if end <= start:
        raise BackfillError("--to must be after --from (the range is from --from, included, "
                            "to --to, excluded)")
    n = count(cron, zone, start, end)
    if n == 0:
        raise BackfillError(f"{cron.text!r} has no scheduled time in that range")
    if n > MAX_SLOTS:
        raise BackfillError(f"the range holds {n:,} scheduled times; at most {MAX_SLOTS:,} at once "
                            "(split it into several backfills)")
    if n > CONFIRM_OVER and not confirmed:
        raise BackfillError(f"the range holds {n:,} scheduled times, more than {CONFIRM_OVER:,}: "
                            "add --yes if that is what you mean (--dry-run lists them)")
    return n


_NEVER_RAN = (RunStatus.SKIPPED, RunStatus.MISSED)


def plan(slot_times: list[float], runs: list[Run], reprocess: Reprocess) -> list[Slot]:
    """What to do with each scheduled time, given the job's runs at those times.

    The latest attempt at a time decides: a running one is left alone; one that
    succeeded runs again only under `all`; one that failed (failed, timeout, killed,
    lost, error) under `failed` and `all`; a time with no run, or only a skipped or
    missed one, runs under every policy. A rerun gets the next attempt number, so the
    run store's key (job, scheduled time, attempt) tells it from the earlier runs.
    """
    latest: dict[float, Run] = {}
    for run in runs:
        if run.scheduled_for not in latest or run.attempt > latest[run.scheduled_for].attempt:
            latest[run.scheduled_for] = run
    slots = []
    for t in slot_times:
        run = latest.get(t)
        if run is None:
            slots.append(Slot(t, True, 1, "no run yet"))
            continue
        attempt = run.attempt + 1
        label = f"run {run.id}"
        if run.status is RunStatus.RUNNING:
            slots.append(Slot(t, False, attempt, f"running now ({label})"))
        elif run.status in _NEVER_RAN:
            slots.append(Slot(t, True, attempt, f"never ran: {run.status} ({label})"))
        elif run.status is RunStatus.SUCCESS:
            go = reprocess is Reprocess.ALL
            slots.append(Slot(t, go, attempt, f"succeeded ({label})" + (
                "" if go else "; --reprocess all runs it again")))
        else:
            go = reprocess is not Reprocess.NONE
            slots.append(Slot(t, go, attempt, f"{run.status} ({label})" + (
                "" if go else "; --reprocess failed runs it again")))
    return slots
