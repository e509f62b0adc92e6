"""The schedule engine against an independent brute-force oracle (tests/cron_oracle.py),
plus pinned DST examples, validation messages and the non-cron schedules.

All instants are constants and all zones are pinned; nothing reads the clock.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cronsup.model import AfterJobs, Every, Reboot
from cronsup.schedule import (
    ScheduleError,
    can_fire,
    fire_times,
    fires_between,
    next_fire,
    parse_cron,
    parse_schedule,
)

sys.path.insert(0, os.path.dirname(__file__))
import cron_oracle as oracle  # noqa: E402

UTC = dt.timezone.utc
BERLIN = oracle.zone("Europe/Berlin")
NEW_YORK = oracle.zone("America/New_York")
LORD_HOWE = oracle.zone("Australia/Lord_Howe")  # a 30-minute DST shift
ZONE_NAMES = ("Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "UTC")
ZONES = {name: oracle.zone(name) for name in ZONE_NAMES}


def at(zone: dt.tzinfo, *fields: int, fold: int = 0) -> dt.datetime:
    return dt.datetime(*fields, tzinfo=zone, fold=fold)


def iso(times) -> list[str]:
    return [t.isoformat() for t in times]


def as_utc(times) -> list[dt.datetime]:
    # Compare in UTC: by PEP 495, `==` between an aware datetime in a repeated hour and one
    # in another zone is always False, even for the same instant.
    return [t.astimezone(UTC) for t in times]


def assert_in_zone(t: dt.datetime, zone: dt.tzinfo) -> None:
    """`t` is shown in the job's zone, with the fold (and so the offset) of its instant."""
    assert t.tzinfo == zone
    assert t.isoformat() == t.astimezone(UTC).astimezone(zone).isoformat()


# --- DST transitions ------------------------------------------------------------------------
#
# Every offset change of 2026 and 2027 in the zones under test, found by scanning (see
# cron_oracle.transitions) and pinned here so a wrong scan cannot go unnoticed:
#   Europe/Berlin       2026-03-29 01:00Z  02:00 CET   -> 03:00 CEST  (02:00-02:59 skipped)
#                       2026-10-25 01:00Z  03:00 CEST  -> 02:00 CET   (02:00-02:59 twice)
#                       2027-03-28 01:00Z, 2027-10-31 01:00Z, likewise
#   America/New_York    2026-03-08 07:00Z  02:00 EST   -> 03:00 EDT   (02:00-02:59 skipped)
#                       2026-11-01 06:00Z  02:00 EDT   -> 01:00 EST   (01:00-01:59 twice)
#                       2027-03-14 07:00Z, 2027-11-07 06:00Z, likewise
#   Australia/Lord_Howe 2026-04-04 15:00Z  02:00 +11   -> 01:30 +1030 (01:30-01:59 twice)
#                       2026-10-03 15:30Z  02:00 +1030 -> 02:30 +11   (02:00-02:29 skipped)
#                       2027-04-03 15:00Z, 2027-10-02 15:30Z, likewise
#   UTC                 none
PINNED_TRANSITIONS = {
    "Europe/Berlin": ["2026-03-29T01:00", "2026-10-25T01:00", "2027-03-28T01:00",
                      "2027-10-31T01:00"],
    "America/New_York": ["2026-03-08T07:00", "2026-11-01T06:00", "2027-03-14T07:00",
                         "2027-11-07T06:00"],
    "Australia/Lord_Howe": ["2026-04-04T15:00", "2026-10-03T15:30", "2027-04-03T15:00",
                            "2027-10-02T15:30"],
    "UTC": [],
}
SCAN_FROM = dt.datetime(2026, 1, 1, tzinfo=UTC)
SCAN_TO = dt.datetime(2028, 1, 1, tzinfo=UTC)
TRANSITIONS = {name: [t for t, _, _ in oracle.transitions(zone, SCAN_FROM, SCAN_TO)]
               for name, zone in ZONES.items()}
ALL_TRANSITIONS = [(name, t) for name in ZONE_NAMES for t in TRANSITIONS[name]]


def test_the_scanned_transitions_are_the_known_ones():
    scanned = {name: [t.strftime("%Y-%m-%dT%H:%M") for t in ts]
               for name, ts in TRANSITIONS.items()}
    assert scanned == PINNED_TRANSITIONS


# Fixed-time and wildcard jobs that touch the skipped or repeated hours of all three zones.
DST_EXPRESSIONS = [
    "30 2 * * *",
    "0,30 2 * * *",
    "*/15 * * * *",
    "0 * * * *",
    "@hourly",
    "@daily",
    "15 1-3 * * *",
    "0,15,30,45 2 * * *",
    "0,15,30,45 1 * * *",
    "*/15 1 * * *",
    "* 2 * * *",
    "59 1 * * *",
    "0 3 * * *",
    "30 1 * * *",
    "*/7 1-3 * * *",
    "0-59/20 2 * * *",
    "29,31 2 * * 0",
]


@pytest.mark.parametrize("expression", DST_EXPRESSIONS)
@pytest.mark.parametrize("zone_name,transition", ALL_TRANSITIONS,
                         ids=[f"{n}-{t:%Y-%m-%d}" for n, t in ALL_TRANSITIONS])
def test_it_fires_as_the_oracle_does_around_every_dst_change(zone_name, transition, expression):
    zone = ZONES[zone_name]
    cron = parse_cron(expression)
    start, end = transition - dt.timedelta(days=1), transition + dt.timedelta(days=1)
    expected = oracle.fires_between(expression, start, end, zone)
    assert as_utc(fires_between(cron, start, end, zone)) == expected

    # next_fire from every 5 minutes around the change, on and off the minute, and from
    # just before, at and just after the change itself.
    wide = oracle.fires_between(expression, start, end + dt.timedelta(days=8), zone)
    second = dt.timedelta(seconds=1)
    starts = [transition + dt.timedelta(minutes=m, seconds=s)
              for m in range(-180, 181, 5) for s in (0, 30)]
    starts += [transition - second, transition, transition + second]
    for after in starts:
        for given_in in (UTC, zone):  # the zone of `after` must not matter
            got = next_fire(cron, after.astimezone(given_in), zone)
            want = next(t for t in wide if t > after)
            assert as_utc([got]) == [want], f"next_fire after {after.astimezone(zone).isoformat()}"
            assert_in_zone(got, zone)


# --- Pinned DST examples (Europe/Berlin, Australia/Lord_Howe) -----------------------------

def test_a_fixed_time_job_in_the_repeated_hour_fires_once_at_the_first_pass():
    # croniter gets this wrong: it returns 02:30 twice on 2026-10-25.
    cron = parse_cron("30 2 * * *")
    fires = fires_between(cron, at(BERLIN, 2026, 10, 24, 12), at(BERLIN, 2026, 10, 26, 12), BERLIN)
    assert iso(fires) == ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]


def test_a_fixed_time_job_does_not_fire_again_when_asked_from_inside_the_repeated_hour():
    cron = parse_cron("30 2 * * *")
    # 02:40 CEST (first pass) and 02:10 CET (second pass): the next fire is the next day.
    for after in (at(BERLIN, 2026, 10, 25, 2, 40), at(BERLIN, 2026, 10, 25, 2, 10, fold=1)):
        assert next_fire(cron, after, BERLIN).isoformat() == "2026-10-26T02:30:00+01:00"


def test_a_fixed_time_job_in_the_skipped_hour_fires_at_the_change():
    cron = parse_cron("30 2 * * *")
    fires = fires_between(cron, at(BERLIN, 2026, 3, 28, 12), at(BERLIN, 2026, 3, 30, 12), BERLIN)
    assert iso(fires) == ["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"]


def test_several_skipped_times_of_one_job_collapse_to_one_fire_at_the_change():
    cron = parse_cron("0,30 2,3 * * *")
    fires = fires_between(cron, at(BERLIN, 2026, 3, 29, 0), at(BERLIN, 2026, 3, 29, 12), BERLIN)
    assert iso(fires) == ["2026-03-29T03:00:00+02:00", "2026-03-29T03:30:00+02:00"]


def test_hourly_follows_the_wall_clock_through_both_changes():
    hourly = parse_cron("@hourly")
    autumn = fires_between(hourly, at(BERLIN, 2026, 10, 25, 0), at(BERLIN, 2026, 10, 25, 4), BERLIN)
    assert iso(autumn) == [
        "2026-10-25T01:00:00+02:00",
        "2026-10-25T02:00:00+02:00",
        "2026-10-25T02:00:00+01:00",  # the repeated hour runs again
        "2026-10-25T03:00:00+01:00",
        "2026-10-25T04:00:00+01:00",
    ]
    spring = fires_between(hourly, at(BERLIN, 2026, 3, 29, 0), at(BERLIN, 2026, 3, 29, 5), BERLIN)
    assert iso(spring) == [
        "2026-03-29T01:00:00+01:00",
        # 02:00 does not exist and is not run
        "2026-03-29T03:00:00+02:00",
        "2026-03-29T04:00:00+02:00",
        "2026-03-29T05:00:00+02:00",
    ]


def test_a_half_hour_shift_moves_fixed_jobs_to_the_change_and_repeats_wildcard_ones():
    # Lord Howe 2026-10-04: 02:00 +10:30 becomes 02:30 +11:00.
    fixed = parse_cron("0,15,30,45 2 * * *")
    spring = fires_between(fixed, at(LORD_HOWE, 2026, 10, 4, 0), at(LORD_HOWE, 2026, 10, 4, 3),
                           LORD_HOWE)
    assert iso(spring) == ["2026-10-04T02:30:00+11:00", "2026-10-04T02:45:00+11:00"]
    # Lord Howe 2026-04-05: 02:00 +11:00 becomes 01:30 +10:30, so 01:30-01:59 happens twice.
    window = (at(LORD_HOWE, 2026, 4, 5, 0), at(LORD_HOWE, 2026, 4, 5, 2, 30))
    once = fires_between(parse_cron("0,15,30,45 1 * * *"), *window, LORD_HOWE)
    assert iso(once) == ["2026-04-05T01:00:00+11:00", "2026-04-05T01:15:00+11:00",
                         "2026-04-05T01:30:00+11:00", "2026-04-05T01:45:00+11:00"]
    twice = fires_between(parse_cron("*/15 1 * * *"), *window, LORD_HOWE)
    assert iso(twice) == ["2026-04-05T01:00:00+11:00", "2026-04-05T01:15:00+11:00",
                          "2026-04-05T01:30:00+11:00", "2026-04-05T01:45:00+11:00",
                          "2026-04-05T01:30:00+10:30", "2026-04-05T01:45:00+10:30"]


def test_the_oracle_itself_gives_the_pinned_dst_examples():
    def oracle_iso(expression, zone, start, end):
        return iso(t.astimezone(zone) for t in oracle.fires_between(expression, start, end, zone))

    assert oracle_iso("30 2 * * *", BERLIN, at(BERLIN, 2026, 10, 25, 0),
                      at(BERLIN, 2026, 10, 25, 12)) == ["2026-10-25T02:30:00+02:00"]
    assert oracle_iso("0,30 2 * * *", BERLIN, at(BERLIN, 2026, 3, 29, 0),
                      at(BERLIN, 2026, 3, 29, 12)) == ["2026-03-29T03:00:00+02:00"]
    assert oracle_iso("@hourly", BERLIN, at(BERLIN, 2026, 10, 25, 1, 30),
                      at(BERLIN, 2026, 10, 25, 2, 30, fold=1)) == [
        "2026-10-25T02:00:00+02:00", "2026-10-25T02:00:00+01:00"]
    assert oracle_iso("*/15 1 * * *", LORD_HOWE, at(LORD_HOWE, 2026, 4, 5, 1, 40),
                      at(LORD_HOWE, 2026, 4, 5, 2, 30)) == [
        "2026-04-05T01:45:00+11:00", "2026-04-05T01:30:00+10:30", "2026-04-05T01:45:00+10:30"]


# --- Day rules and field forms --------------------------------------------------------------

def days(expression: str, start: dt.date, end: dt.date) -> list[str]:
    cron = parse_cron(expression)
    begin = dt.datetime.combine(start, dt.time(), UTC) - dt.timedelta(seconds=1)
    finish = dt.datetime.combine(end, dt.time(23, 59), UTC)
    return [t.date().isoformat() for t in fires_between(cron, begin, finish, UTC)]


def test_both_day_fields_restricted_means_either_matches():
    # 2026-02-01 and 03-01 are Sundays; the Mondays are Feb 2, 9, 16, 23 and Mar 2.
    assert days("0 0 1 * 1", dt.date(2026, 2, 1), dt.date(2026, 3, 2)) == [
        "2026-02-01", "2026-02-02", "2026-02-09", "2026-02-16", "2026-02-23",
        "2026-03-01", "2026-03-02"]


def test_a_star_step_day_field_means_both_must_match():
    # `*/2` starts with a star, so this is odd days AND Mondays (croniter ORs them).
    assert days("0 0 */2 * 1", dt.date(2026, 2, 1), dt.date(2026, 3, 31)) == [
        "2026-02-09", "2026-02-23", "2026-03-09", "2026-03-23"]
    assert days("0 0 1 * */7", dt.date(2026, 1, 1), dt.date(2026, 12, 31)) == [
        "2026-02-01", "2026-03-01", "2026-11-01"]  # the 1st, when it is a Sunday


def test_a_weekday_range_ending_in_sunday_wraps_to_the_weekend():
    want = days("0 0 * * 5,6,0", dt.date(2026, 5, 1), dt.date(2026, 5, 31))
    assert len(want) == 15  # May 2026 starts on a Friday
    for expression in ("0 0 * * fri-sun", "0 0 * * 5-0", "0 0 * * 5-7", "0 0 * * FRI-Sun"):
        assert days(expression, dt.date(2026, 5, 1), dt.date(2026, 5, 31)) == want


def test_seven_is_sunday():
    sundays = days("0 0 * * 0", dt.date(2026, 1, 1), dt.date(2026, 2, 28))
    assert days("0 0 * * 7", dt.date(2026, 1, 1), dt.date(2026, 2, 28)) == sundays
    assert days("0 0 * * sun", dt.date(2026, 1, 1), dt.date(2026, 2, 28)) == sundays
    assert sundays[0] == "2026-01-04"
    assert days("0 0 * * 0-7", dt.date(2026, 1, 1), dt.date(2026, 1, 31)) == days(
        "0 0 * * *", dt.date(2026, 1, 1), dt.date(2026, 1, 31))


def test_a_step_of_sixty_minutes_fires_on_the_hour():
    cron = parse_cron("*/60 * * * *")
    assert cron.minutes == (0,)
    start = at(UTC, 2026, 6, 1, 10, 30)
    assert iso(itertools.islice(fire_times(cron, start, UTC), 3)) == [
        "2026-06-01T11:00:00+00:00", "2026-06-01T12:00:00+00:00", "2026-06-01T13:00:00+00:00"]


def test_fires_between_is_open_at_the_start_and_closed_at_the_end():
    cron = parse_cron("0 * * * *")
    fires = fires_between(cron, at(UTC, 2026, 6, 1, 10), at(UTC, 2026, 6, 1, 12), UTC)
    assert iso(fires) == ["2026-06-01T11:00:00+00:00", "2026-06-01T12:00:00+00:00"]


# --- Never-firing expressions ---------------------------------------------------------------

@pytest.mark.parametrize("expression", ["0 0 30 2 *", "0 0 31 4,6,9,11 *", "0 0 31 2 */2",
                                        "* * 30-31 feb *"])
def test_an_expression_that_can_never_fire_gives_none_quickly(expression):
    cron = parse_cron(expression)
    assert not can_fire(cron)
    began = time.monotonic()
    assert next_fire(cron, at(UTC, 2026, 1, 1), BERLIN) is None
    assert list(fires_between(cron, at(UTC, 2026, 1, 1), at(UTC, 2030, 1, 1), UTC)) == []
    assert time.monotonic() - began < 1.0


def test_february_the_30th_or_a_monday_fires_on_mondays_in_february():
    cron = parse_cron("0 0 30 2 1")  # both restricted: OR
    assert can_fire(cron)
    assert next_fire(cron, at(UTC, 2026, 3, 1), UTC).isoformat() == "2027-02-01T00:00:00+00:00"


def test_a_leap_day_on_a_given_weekday_is_found_years_ahead():
    # Feb 29 that is also a Sunday: 2032 (the day rule is AND, `*/7` being {0} starting with *).
    cron = parse_cron("0 0 29 2 */7")
    assert next_fire(cron, at(UTC, 2026, 1, 1), UTC).isoformat() == "2032-02-29T00:00:00+00:00"


# --- Validation -----------------------------------------------------------------------------

REJECTED = [
    # (expression, words the message must contain)
    ("*/0 * * * *", "step '0' must be a positive integer"),
    ("1-10/0 * * * *", "step '0' must be a positive integer"),
    ("*/1.5 * * * *", "step '1.5' must be a positive integer"),
    ("*/x * * * *", "step 'x' must be a positive integer"),
    ("*/ * * * *", "must be a positive integer"),
    ("*/-2 * * * *", "must be a positive integer"),
    ("5/10 * * * *", "a step needs a range"),
    ("0 0 * * 7/2", "a step needs a range"),
    ("0 0 * jan/2 *", "a step needs a range"),
    ("30-10 * * * *", "reversed, so cron would never run it"),
    ("0 0 * * sat-mon", "reversed"),
    ("0 0 1 * * *", "cron has no seconds field"),
    ("0 0 1 *", "cron needs 5"),
    ("", "cron needs 5"),
    ("0 0 L * *", "'L' is Quartz syntax"),
    ("0 0 15W * *", "'W' is Quartz syntax"),
    ("0 0 * * 1#2", "'#' is Quartz syntax"),
    ("0 0 ? * 1", "'?' is Quartz syntax"),
    ("0 0 * * 5L", "'L' is Quartz syntax"),
    ("60 * * * *", "'60' is out of range 0-59"),
    ("0 24 * * *", "'24' is out of range 0-23"),
    ("0 0 0 * *", "'0' is out of range 1-31"),
    ("0 0 32 * *", "'32' is out of range 1-31"),
    ("0 0 * 0 *", "'0' is out of range 1-12"),
    ("0 0 * 13 *", "'13' is out of range 1-12"),
    ("0 0 * * 8", "'8' is out of range 0-7"),
    ("0-60 * * * *", "'60' is out of range 0-59"),
    ("mon * * * *", "names are allowed only in the month and day-of-week fields"),
    ("0 jan * * *", "names are allowed only in the month and day-of-week fields"),
    ("0 0 * foo *", "'foo' is not a month name"),
    ("0 0 * * sunday", "'sunday' is not a day name"),
    ("0 0 * mon *", "'mon' is not a month name"),
    ("1,,2 * * * *", "empty item in a list"),
    ("1, * * * *", "empty item in a list"),
    ("-5 * * * *", "is not a number"),
    ("1-2-3 * * * *", "is not a number"),
    ("@foo", "unknown keyword '@foo'"),
]


@pytest.mark.parametrize("expression,message", REJECTED, ids=[e or "empty" for e, _ in REJECTED])
def test_it_rejects_what_cron_would_not_run_and_says_why(expression, message):
    with pytest.raises(ScheduleError) as caught:
        parse_cron(expression)
    assert message in str(caught.value)


def test_it_names_the_field_in_its_messages():
    with pytest.raises(ScheduleError, match=r"^hour field '24':"):
        parse_cron("0 24 * * *")
    with pytest.raises(ScheduleError, match=r"^day-of-week field '1#2':"):
        parse_cron("0 0 * * 1#2")


def test_a_step_without_a_range_says_what_each_cron_does_with_it():
    with pytest.raises(ScheduleError) as caught:
        parse_cron("5/10 * * * *")
    message = str(caught.value)
    assert "'5-59/10' or '*/10'" in message
    assert "Debian's cron rejects '5/10'" in message


def test_a_reversed_range_suggests_a_list_that_wraps():
    with pytest.raises(ScheduleError, match=r"write '30-59,0-10'"):
        parse_cron("30-10 * * * *")


@pytest.mark.parametrize("expression", ["² * * * *", "*/² * * * *", "٣ * * * *",
                                        "0 0 1-٣ * *"])
def test_it_accepts_only_ascii_digits(expression):
    # cron reads numbers with C's isdigit(); str.isdigit() also passes '²' (which int()
    # then refuses with a bare ValueError) and '٣' (which int() reads as 3).
    with pytest.raises(ScheduleError, match="is not a number|must be a positive integer"):
        parse_cron(expression)


@pytest.mark.parametrize("expression,field", [("0 wed * * *", "hour"), ("jul * * * *", "minute"),
                                              ("0 0 * * jul", "day-of-week")])
def test_a_name_in_the_wrong_field_is_not_mistaken_for_quartz_syntax(expression, field):
    # The W of `wed` and the L of `jul` are parts of names, not Quartz's W and L.
    with pytest.raises(ScheduleError) as caught:
        parse_cron(expression)
    message = str(caught.value)
    assert message.startswith(f"{field} field")
    assert "Quartz" not in message
    assert "names are allowed only" in message or "is not a day name" in message


ACCEPTED = [
    ("*/60 * * * *", "minutes", (0,)),
    ("0 0 * jan-dec/2 *", "months", (1, 3, 5, 7, 9, 11)),
    ("0 0 * * MON-fri", "weekdays", (1, 2, 3, 4, 5)),
    ("0 0 * * 5-0", "weekdays", (0, 5, 6)),
    ("0 0 * * 0-7", "weekdays", (0, 1, 2, 3, 4, 5, 6)),
    ("0 0 * * 7", "weekdays", (0,)),
    ("0 0 * * sat-sun", "weekdays", (0, 6)),
    ("0 0 * * 1-7/2", "weekdays", (0, 1, 3, 5)),
    ("0 0 * JUL,aug *", "months", (7, 8)),
    ("0 0 */10 * *", "days", (1, 11, 21, 31)),
    ("0-10/5,30 * * * *", "minutes", (0, 5, 10, 30)),
    ("0 22-23,0-1 * * *", "hours", (0, 1, 22, 23)),
    ("  0\t0   * *  *  ", "hours", (0,)),
]


@pytest.mark.parametrize("expression,field,values", ACCEPTED, ids=[e for e, _, _ in ACCEPTED])
def test_it_accepts_what_cron_accepts(expression, field, values):
    assert getattr(parse_cron(expression), field) == values


@pytest.mark.parametrize("expression,day_or,wildcard", [
    ("0 2 * * *", False, False),
    ("0 0 1 * 1", True, False),
    ("0 0 */2 * 1", False, False),
    ("0 0 1 * */2", False, False),
    ("*/5 2 * * *", False, True),
    ("0 */2 * * *", False, True),
    ("0-59 2 * * *", False, False),  # the same minutes as `*`, but fixed-time by cron's rule
    ("@hourly", False, True),
    ("@daily", False, False),
])
def test_it_derives_the_day_rule_and_the_dst_kind_from_the_leading_star(expression, day_or,
                                                                        wildcard):
    cron = parse_cron(expression)
    assert (cron.day_or, cron.wildcard) == (day_or, wildcard)


@pytest.mark.parametrize("macro,fields", [
    ("@yearly", "0 0 1 1 *"), ("@annually", "0 0 1 1 *"), ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"), ("@daily", "0 0 * * *"), ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
])
def test_a_macro_means_its_five_fields_and_keeps_its_text(macro, fields):
    cron = parse_cron(macro)
    assert cron.text == macro
    plain = parse_cron(fields)
    assert (cron.minutes, cron.hours, cron.days, cron.months, cron.weekdays, cron.day_or,
            cron.wildcard) == (plain.minutes, plain.hours, plain.days, plain.months,
                               plain.weekdays, plain.day_or, plain.wildcard)


# --- parse_schedule -------------------------------------------------------------------------

@pytest.mark.parametrize("text,seconds", [("@every 90s", 90), ("@every 1h30m", 5400),
                                          ("@every 2d", 172800), ("@every  45", 45)])
def test_every_takes_a_duration(text, seconds):
    schedule = parse_schedule(text)
    assert isinstance(schedule, Every)
    assert schedule.seconds == seconds


@pytest.mark.parametrize("text,message", [
    ("@every 0s", "at least 1 second"),
    ("@every 500ms", "at least 1 second"),
    ("@every", "needs a duration"),
    ("@every soon", "bad duration"),
    ("@every 5x", "bad duration"),
    ("@everyday", "unknown keyword '@everyday'"),
    ("@every90s", "unknown keyword '@every90s'"),
    ("@foo", "unknown keyword '@foo'"),
])
def test_it_rejects_bad_keyword_schedules(text, message):
    with pytest.raises(ScheduleError) as caught:
        parse_schedule(text)
    assert message in str(caught.value)


def test_after_and_reboot_are_schedules_of_their_own():
    assert parse_schedule("@after") == AfterJobs()
    assert parse_schedule("@reboot") == Reboot()
    assert parse_schedule("  @reboot ") == Reboot()


def test_parse_schedule_reads_cron_fields_and_macros_too():
    assert parse_schedule("*/5 * * * *").minutes == tuple(range(0, 60, 5))
    assert parse_schedule("@daily").text == "@daily"


# --- Property: the engine agrees with the oracle --------------------------------------------

MONTH_NAMES = oracle.MONTHS
DAY_NAMES = oracle.WEEKDAYS


@st.composite
def field_item(draw, low: int, high: int, names: list[str] | None = None,
               name_base: int = 0, weekday: bool = False, near: tuple[int, ...] = (),
               stars: bool = True) -> str:
    """One list item: `*`, `*/n`, `v`, `a-b`, `a-b/n`, with names where the field has them."""
    def value():
        if near and draw(st.booleans()):
            return draw(st.sampled_from(near))
        return draw(st.integers(low, high))

    def render(v: int) -> str:
        index = v - name_base
        if names and 0 <= index < len(names) and draw(st.integers(0, 2)) == 0:
            name = names[index]
            return draw(st.sampled_from([name, name.upper(), name.capitalize()]))
        return str(v)

    step = st.integers(1, high - low + 2)
    kinds = ["star", "star-step"] if stars else []
    kind = draw(st.sampled_from([*kinds, "value", "range", "range-step"]))
    if kind == "star":
        return "*"
    if kind == "star-step":
        return f"*/{draw(step)}"
    if kind == "value":
        return render(value())
    a = value()
    if weekday and a > 0 and draw(st.integers(0, 3)) == 0:
        b = 0  # `fri-sun`, `5-0`: wraps to Sunday
    else:
        b = draw(st.integers(a, high))
    text = f"{render(a)}-{render(b)}"
    return text if kind == "range" else f"{text}/{draw(step)}"


def field(low, high, names=None, name_base=0, weekday=False, near=()):
    """A field: `*`, one item or a list, restricted (not starting with `*`) half the time,
    so that fixed-time jobs and the day-of-month OR day-of-week rule come up often."""
    item = field_item(low, high, names, name_base, weekday, near)
    restricted = field_item(low, high, names, name_base, weekday, near, stars=False)
    return st.one_of(
        st.just("*"),
        item,
        st.lists(item, min_size=2, max_size=3).map(",".join),
        restricted,
        st.lists(restricted, min_size=2, max_size=3).map(",".join),
        st.tuples(restricted, item).map(",".join),
    )


def expressions(hours):
    return st.tuples(
        field(0, 59, near=(0, 15, 30, 45, 59)),
        hours,
        field(1, 31, near=(1, 29, 30, 31)),
        field(1, 12, MONTH_NAMES, name_base=1, near=(2, 3, 4, 10, 11)),
        field(0, 7, DAY_NAMES, weekday=True),
    ).map(" ".join) | st.sampled_from(sorted(oracle.MACROS))


EXPRESSIONS = expressions(field(0, 23, near=(1, 2, 3)))  # the hours DST changes touch
EARLY_HOURS = expressions(field(0, 4, near=(1, 2, 3)))

EPOCH_2026 = dt.datetime(2026, 1, 1, tzinfo=UTC)
TWO_YEARS = int((dt.datetime(2028, 1, 1, tzinfo=UTC) - EPOCH_2026).total_seconds())


@st.composite
def start_instants(draw, zone_name: str) -> dt.datetime:
    """Anywhere in 2026-2027, or (half the time) shortly before a DST change."""
    if TRANSITIONS[zone_name] and draw(st.booleans()):
        base = draw(st.sampled_from(TRANSITIONS[zone_name]))
        before = draw(st.sampled_from([4 * 60, 2 * 1440]))  # hours or days before
        start = base + dt.timedelta(minutes=draw(st.integers(-before, 60)))
    else:
        start = EPOCH_2026 + dt.timedelta(minutes=draw(st.integers(0, TWO_YEARS // 60)))
    start += dt.timedelta(seconds=draw(st.sampled_from([0, 0, 0, 1, 30, 59])))
    return start.astimezone(draw(st.sampled_from([UTC, ZONES[zone_name]])))


CASES = st.sampled_from(ZONE_NAMES).flatmap(
    lambda name: st.tuples(st.just(name), start_instants(name), EXPRESSIONS))


@st.composite
def dst_cases(draw):
    """A job at night (hours 0-4, or `*`), from up to four hours before a DST change."""
    name, transition = draw(st.sampled_from(ALL_TRANSITIONS))
    start = transition + dt.timedelta(minutes=draw(st.integers(-4 * 60, 30)),
                                      seconds=draw(st.sampled_from([0, 0, 1, 30, 59])))
    return name, start.astimezone(draw(st.sampled_from([UTC, ZONES[name]]))), draw(EARLY_HOURS)


FIRES = 12  # compare the next this many fires ...
HORIZON = dt.timedelta(days=190)  # ... or all fires in this window, whichever ends first


def assert_agrees_with_the_oracle(zone_name: str, start: dt.datetime, expression: str) -> None:
    zone = ZONES[zone_name]
    cron = parse_cron(expression)
    engine = list(itertools.islice(fires_between(cron, start, start + HORIZON, zone), FIRES))
    # If the engine skipped a fire before its last one, or invented one, the oracle's list
    # over the same span differs.
    end = engine[-1] if len(engine) == FIRES else start + HORIZON
    expected = oracle.fires_between(expression, start, end, zone)
    assert as_utc(engine) == expected, (
        f"{expression!r} in {zone_name} after {start.isoformat()}:\n"
        f"engine {iso(t.astimezone(zone) for t in engine)}\n"
        f"oracle {iso(t.astimezone(zone) for t in expected)}")
    for t in engine:
        assert_in_zone(t, zone)


PROPERTY_SETTINGS = settings(max_examples=2500, deadline=None, derandomize=True, database=None,
                             suppress_health_check=[HealthCheck.too_slow])


@PROPERTY_SETTINGS
@given(CASES)
def test_it_fires_as_the_oracle_does_for_random_expressions(case):
    assert_agrees_with_the_oracle(*case)


@PROPERTY_SETTINGS
@given(dst_cases())
def test_it_fires_as_the_oracle_does_for_random_night_jobs_across_dst_changes(case):
    assert_agrees_with_the_oracle(*case)


@pytest.mark.parametrize("expression", ["* * * * *", "30 2 * * *", "*/7 1-3 * * 0",
                                        "15 * 1,15 * 5", "0 0 30 2 *"])
@pytest.mark.parametrize("start", [(2026, 3, 20, 13, 7), (2026, 10, 20, 0, 0)])
def test_count_fires_matches_walking_them_across_dst_changes(expression, start):
    from cronsup.schedule import count_fires

    cron = parse_cron(expression)
    begin = at(BERLIN, *start)
    end = begin + dt.timedelta(days=15, hours=5, minutes=3)
    walked = sum(1 for _ in fires_between(cron, begin, end, BERLIN))
    assert count_fires(cron, begin.timestamp(), end.timestamp(), BERLIN) == walked
