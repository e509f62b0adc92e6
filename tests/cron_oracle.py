"""A brute-force cron oracle, written from the rules alone, to check `cronsup.schedule` against.

It shares no code with the engine: its own tiny field parser (for well-formed expressions
only; it does not validate), a day-by-day, hour-by-hour, minute-by-minute walk over naive
wall-clock times testing each against the fields, and a direct mapping of every matching
wall time to instants with zoneinfo. Slow on purpose; the goal is to be obviously right.

The rules (Debian cron's):
- Fields: minute 0-59, hour 0-23, day-of-month 1-31, month 1-12 (jan..dec), day-of-week 0-7
  (0 and 7 are Sunday; sun..sat). Lists, ranges, `*/n`, `a-b/n`. A weekday range ending
  in 0 (`fri-sun`, `5-0`) runs to Sunday.
- If the day-of-month or the day-of-week field starts with `*`, a day must match both;
  if both are restricted, either one is enough.
- A job whose minute or hour field starts with `*` is "wildcard"; others are "fixed-time".
- DST in the job's zone: a wall time that exists once fires once. A repeated wall time
  fires at its first occurrence (fixed-time) or at both (wildcard). A skipped wall time
  does not fire (wildcard) or fires at the instant of the change (fixed-time).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo

UTC = dt.timezone.utc
ONE_MINUTE = dt.timedelta(minutes=1)
ONE_DAY = dt.timedelta(days=1)
SLACK = dt.timedelta(hours=3)

MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
WEEKDAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


def _value(text: str, names: dict[str, int]) -> int:
    if text.lower() in names:
        return names[text.lower()]
    return int(text)


def parse_field(text: str, low: int, high: int, names: dict[str, int],
                weekday: bool = False) -> set[int]:
    """The values one well-formed field selects, e.g. `1-10/3,20` -> {1, 4, 7, 10, 20}."""
    selected: set[int] = set()
    for item in text.split(","):
        if "/" in item:
            base, step_text = item.split("/")
            step = int(step_text)
        else:
            base, step = item, 1
        if base == "*":
            first, last = low, high
        elif "-" in base:
            a, b = base.split("-")
            first, last = _value(a, names), _value(b, names)
            if weekday and last == 0 and first > 0:
                last = 7  # `fri-sun`: Friday through Sunday
        else:
            first = last = _value(base, names)
        value = first
        while value <= last:
            selected.add(value)
            value += step
    if weekday:
        selected = {0 if v == 7 else v for v in selected}  # 7 is Sunday too
    return selected


class OracleCron:
    """Five cron fields (or a macro) as plain sets, plus the two flags cron derives."""

    def __init__(self, text: str):
        fields = MACROS.get(text.strip().lower(), text).split()
        minute, hour, dom, month, dow = fields
        self.minutes = parse_field(minute, 0, 59, {})
        self.hours = parse_field(hour, 0, 23, {})
        self.doms = parse_field(dom, 1, 31, {})
        self.months = parse_field(month, 1, 12, {n: i + 1 for i, n in enumerate(MONTHS)})
        self.dows = parse_field(dow, 0, 7, {n: i for i, n in enumerate(WEEKDAYS)}, weekday=True)
        # Either day field starting with '*' makes the day rule AND, else OR.
        self.day_and = dom.startswith("*") or dow.startswith("*")
        self.wildcard = minute.startswith("*") or hour.startswith("*")

    def date_matches(self, day: dt.date) -> bool:
        if day.month not in self.months:
            return False
        dom_ok = day.day in self.doms
        dow_ok = day.isoweekday() % 7 in self.dows  # isoweekday: Monday 1 .. Sunday 7
        return (dom_ok and dow_ok) if self.day_and else (dom_ok or dow_ok)

    def wall_matches(self, wall: dt.datetime) -> bool:
        return (self.date_matches(wall.date()) and wall.hour in self.hours
                and wall.minute in self.minutes)


def _occurrences(wall: dt.datetime, zone: dt.tzinfo) -> list[dt.datetime]:
    """The UTC instants at which the zone's clock shows `wall`: 0 (gap), 1, or 2 (repeat)."""
    found = set()
    for fold in (0, 1):
        instant = wall.replace(tzinfo=zone, fold=fold).astimezone(UTC)
        # A wall time is real only if the instant reads back as the same wall time.
        if instant.astimezone(zone).replace(tzinfo=None) == wall:
            found.add(instant)
    return sorted(found)


def _change_instant(wall: dt.datetime, zone: dt.tzinfo) -> dt.datetime:
    """The instant the clock jumped over the skipped `wall`: the first UTC minute whose
    wall time is past `wall`, scanning forward from well before it."""
    instant = wall.replace(tzinfo=zone, fold=0).astimezone(UTC) - dt.timedelta(hours=4)
    while instant.astimezone(zone).replace(tzinfo=None) <= wall:
        instant += ONE_MINUTE
    return instant


def instants_for(cron: OracleCron, wall: dt.datetime, zone: dt.tzinfo) -> list[dt.datetime]:
    """Where a matching wall time fires, by the DST rules in the module docstring."""
    occurrences = _occurrences(wall, zone)
    if len(occurrences) == 1:
        return occurrences
    if len(occurrences) == 2:
        # Cross-check against the offsets (PEP 495): fold=0 is the first pass, which has
        # the larger offset when the clocks go back.
        a, b = (wall.replace(tzinfo=zone, fold=f).utcoffset() for f in (0, 1))
        assert a > b
        return occurrences if cron.wildcard else occurrences[:1]
    a, b = (wall.replace(tzinfo=zone, fold=f).utcoffset() for f in (0, 1))
    assert a < b  # a gap: fold=0 reads it with the offset before the change, the smaller
    return [] if cron.wildcard else [_change_instant(wall, zone)]


def fires_between(text: str, start: dt.datetime, end: dt.datetime,
                  zone: dt.tzinfo) -> list[dt.datetime]:
    """Every fire in (start, end], as sorted UTC instants without duplicates."""
    cron = OracleCron(text)
    # A wall time fires within a DST shift (at most an hour or two; three to be safe) of the
    # instant at which the clock shows it, so walk the wall times from three hours before
    # `start` to three hours after `end`, then keep only instants in (start, end].
    first = start.astimezone(zone).replace(tzinfo=None) - SLACK
    last = end.astimezone(zone).replace(tzinfo=None) + SLACK
    found: set[dt.datetime] = set()
    day = first.date()
    while day <= last.date():
        if cron.date_matches(day):  # a minute can only match on a matching date
            for hour in range(24):
                if hour not in cron.hours:
                    continue
                for minute in range(60):
                    wall = dt.datetime(day.year, day.month, day.day, hour, minute)
                    if first <= wall <= last and cron.wall_matches(wall):
                        found.update(instants_for(cron, wall, zone))
        day += ONE_DAY
    return sorted(t for t in found if start < t <= end)


def transitions(zone: dt.tzinfo, start: dt.datetime, end: dt.datetime,
                ) -> list[tuple[dt.datetime, dt.timedelta, dt.timedelta]]:
    """(instant, offset before, offset after) of each offset change in [start, end), found
    by scanning UTC hours and then the minutes of the hour in which the offset changed."""
    out = []
    t = start.astimezone(UTC)
    while t < end:
        nxt = t + dt.timedelta(hours=1)
        before = t.astimezone(zone).utcoffset()
        if nxt.astimezone(zone).utcoffset() != before:
            m = t
            while m.astimezone(zone).utcoffset() == before:
                m += ONE_MINUTE
            out.append((m, before, m.astimezone(zone).utcoffset()))
        t = nxt
    return out


def zone(name: str) -> dt.tzinfo:
    return zoneinfo.ZoneInfo(name)
