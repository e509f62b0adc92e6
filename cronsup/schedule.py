"""Cron expressions with Debian cron's exact semantics, and their fire times in a zone.

Pure: no clock, no I/O beyond loading a zone. Every field is validated here, more strictly
than croniter does: it silently accepts Quartz syntax, seconds fields, `5/10` and reversed
ranges, all of which cron rejects or never runs.

croniter is not used: it cannot be corrected for DST (for `30 2 * * *` in Europe/Berlin it
returns 02:30 twice on the day the clocks go back), it applies the day-of-month OR
day-of-week rule to `*/2`, and at ~160 µs to build and step one expression it is too slow for
10,000 jobs. The engine below walks the expanded fields directly, as cronsim does.
"""

from __future__ import annotations

import calendar
import datetime as dt
import functools
import os
import re
import zoneinfo
from collections.abc import Iterator

from cronsup import suggest
from cronsup.model import AfterJobs, Cron, Every, Reboot, Schedule
from cronsup.units import parse_duration

UTC = dt.timezone.utc
MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
KEYWORDS = (*MACROS, "@reboot", "@every", "@after")
# Far enough that any satisfiable expression fires before it (Feb 29 on a given weekday
# recurs within 40 years), near enough that an impossible one is rejected quickly.
_LAST_YEAR_SPAN = 401
# No zone shifts its offset by more than this across a DST change (Troll: 2 h).
_MAX_SHIFT = dt.timedelta(hours=3)


class ScheduleError(ValueError):
    """A schedule that cron would reject or never run; the message says why."""


def _q(text: str, limit: int = 40) -> str:
    """`text` quoted for a message, cut short so a huge field cannot flood it."""
    return repr(text if len(text) <= limit else text[:limit] + "…")


class _Field:
    __slots__ = ("name", "low", "high", "names")

    def __init__(self, name: str, low: int, high: int, names: tuple[str, ...] = ()):
        self.name, self.low, self.high, self.names = name, low, high, names


_FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day-of-month", 1, 31),
    _Field("month", 1, 12, MONTH_NAMES),
    _Field("day-of-week", 0, 7, DAY_NAMES),
)
_QUARTZ = re.compile(r"[LW#?]", re.IGNORECASE)
_NAME_LIKE = re.compile(r"[A-Za-z]{3,}")


def parse_schedule(text: str) -> Schedule:
    """`0 2 * * *`, `@daily`, `@every 90s`, `@after` or `@reboot` to a schedule value."""
    text = " ".join(text.split())
    if text == "@reboot":
        return Reboot()
    if text == "@after":
        return AfterJobs()
    if text == "@every" or text.startswith("@every "):  # `@everyday` is an unknown keyword
        arg = text[len("@every"):].strip()
        if not arg:
            raise ScheduleError("@every needs a duration, such as '@every 90s' or '@every 1h30m'")
        try:
            seconds = parse_duration(arg)
        except ValueError as e:
            raise ScheduleError(f"@every: {e}") from None
        if seconds < 1:
            raise ScheduleError(f"@every {_q(arg)}: the interval must be at least 1 second")
        return Every(text=text, seconds=seconds)
    return parse_cron(text)


def parse_cron(text: str) -> Cron:
    """Five cron fields or a macro such as `@daily`, validated as Debian's cron does."""
    return _parse_cron(" ".join(text.split()))


@functools.lru_cache(maxsize=8192)  # crontabs repeat their expressions; Cron is immutable
def _parse_cron(text: str) -> Cron:
    if text.startswith("@"):
        if text not in MACROS:  # case-sensitive, as in Debian's cron
            hint = suggest.keyword_hint(text.split()[0], KEYWORDS)
            raise ScheduleError(f"unknown keyword {_q(text.split()[0])}{hint}; known: {' '.join(KEYWORDS)}")
        return _build(MACROS[text], text)
    return _build(text, text)


def _build(fields_text: str, text: str) -> Cron:
    parts = fields_text.split()
    if len(parts) == 6:
        raise ScheduleError(
            "6 time fields: cron has no seconds field; write minute hour day-of-month month "
            "day-of-week"
        )
    if len(parts) != 5:
        raise ScheduleError(
            f"{len(parts)} time field{'s' if len(parts) != 1 else ''}: cron needs 5 "
            "(minute hour day-of-month month day-of-week)"
        )
    sets = []
    for part, field in zip(parts, _FIELDS):
        sets.append(_parse_field(part, field))
    weekdays = tuple(sorted({0 if d == 7 else d for d in sets[4]}))
    stars = [p.startswith("*") for p in parts]
    return Cron(
        text=text,
        minutes=tuple(sorted(sets[0])),
        hours=tuple(sorted(sets[1])),
        days=tuple(sorted(sets[2])),
        months=tuple(sorted(sets[3])),
        weekdays=weekdays,
        day_or=not (stars[2] or stars[4]),
        wildcard=stars[0] or stars[1],
    )


def _parse_field(text: str, f: _Field) -> set[int]:
    if _QUARTZ.search(text) and not _is_name_with(text):
        bad = _QUARTZ.search(text).group(0).upper()
        raise ScheduleError(
            f"{f.name} field {_q(text)}: {bad!r} is Quartz syntax that cron does not support"
        )
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise ScheduleError(f"{f.name} field {_q(text)}: empty item in a list")
        values |= _parse_item(item, text, f)
    return values


def _is_name_with(text: str) -> bool:
    """True when every L/W/#/? letter belongs to a word that reads as a name (`jul`, `wed`).

    Quartz's letters stand alone or after digits (`L`, `LW`, `15W`, `5L`); a run of three or
    more letters is a name, and `_number` says whether the field accepts it, so `0 wed * * *`
    is reported as a name in the hour field rather than as Quartz's W.
    """
    return not _QUARTZ.search(_NAME_LIKE.sub("", text))


def _parse_item(item: str, field_text: str, f: _Field) -> set[int]:
    where = f"{f.name} field {_q(field_text)}"
    base, slash, step_text = item.partition("/")
    step = 1
    if slash:
        digits = step_text.lstrip("0")
        if not _is_number(step_text) or not digits:
            raise ScheduleError(f"{where}: the step {_q(step_text)} must be a positive integer")
        step = int(digits) if len(digits) <= 9 else 10**9  # past any range anyway
    if base == "*":
        low, high = f.low, f.high
        if f.name == "day-of-week":
            high = 6  # '*' means every day once; 7 is only an alias of 0
    else:
        low_text, dash, high_text = base.partition("-")
        low = _number(low_text, where, f)
        if not dash and slash:
            raise ScheduleError(
                f"{where}: a step needs a range, as in '{base}-{f.high}/{step}' or '*/{step}'; "
                f"Debian's cron rejects '{item}', older cronie ran it once an hour, and croniter "
                f"reads it as '{base}-{f.high}/{step}'"
            )
        high = _number(high_text, where, f) if dash else low
        if f.name == "day-of-week" and dash and high == 0 and low > 0:
            high = 7  # 'fri-sun' and '5-0' mean Friday to Sunday, as in cronie
        if high < low:
            raise ScheduleError(
                f"{where}: the range {_q(base)} is reversed, so cron would never run it "
                f"(croniter wraps it around); write '{low_text}-{f.high},{f.low}-{high_text}' "
                "for a range that wraps"
            )
    return set(range(low, high + 1, step))


def _number(text: str, where: str, f: _Field) -> int:
    if _is_number(text):
        if len(text) > 4:
            raise ScheduleError(f"{where}: {_q(text)} is out of range {f.low}-{f.high}")
        value = int(text)
    elif text.lower() in f.names:
        value = f.names.index(text.lower()) + (1 if f.name == "month" else 0)
    elif text.isalpha() and f.names:
        kind = "month" if f.name == "month" else "day"
        raise ScheduleError(f"{where}: {_q(text)} is not a {kind} name ({' '.join(f.names)})")
    elif text.isalpha():
        raise ScheduleError(
            f"{where}: {_q(text)} is not a number; names are allowed only in the month and "
            "day-of-week fields"
        )
    else:
        raise ScheduleError(f"{where}: {_q(text)} is not a number")
    if not f.low <= value <= f.high:
        raise ScheduleError(f"{where}: {_q(text)} is out of range {f.low}-{f.high}")
    return value


def _is_number(text: str) -> bool:
    return text.isascii() and text.isdigit()


def can_fire(cron: Cron) -> bool:
    """False when no date ever matches, as for `0 0 30 2 *`."""
    if cron.day_or:
        return True
    longest = {2: 29, 4: 30, 6: 30, 9: 30, 11: 30}
    return any(d <= longest.get(m, 31) for m in cron.months for d in cron.days)


def never_fires(cron: Cron) -> str | None:
    """Why `cron` can never fire (`0 0 30 2 *`), as `check` and `next` both say it; else None."""
    if can_fire(cron):
        return None
    return f"the schedule {cron.text!r} never fires: no month it names has those days"


@functools.lru_cache(maxsize=4096)
def _month_days(days: tuple[int, ...], weekdays: tuple[int, ...], day_or: bool,
                length: int, first_weekday: int) -> tuple[int, ...]:
    """The days of a month of `length` days whose 1st is `first_weekday` (0 = Sunday)."""
    dayset, wdset = set(days), set(weekdays)
    out = []
    for d in range(1, length + 1):
        dom = d in dayset
        dow = (first_weekday + d - 1) % 7 in wdset
        if (dom or dow) if day_or else (dom and dow):
            out.append(d)
    return tuple(out)


def wall_times(cron: Cron, start: dt.datetime) -> Iterator[dt.datetime]:
    """Naive wall-clock minutes at or after `start` that match, in order."""
    first_year = start.year
    for year in range(first_year, first_year + _LAST_YEAR_SPAN):
        in_first_year = year == first_year
        for month in cron.months:
            if in_first_year and month < start.month:
                continue
            same_month = in_first_year and month == start.month
            first_weekday, length = calendar.monthrange(year, month)
            days = _month_days(cron.days, cron.weekdays, cron.day_or, length,
                               (first_weekday + 1) % 7)
            for day in days:
                if same_month and day < start.day:
                    continue
                same_day = same_month and day == start.day
                for hour in cron.hours:
                    if same_day and hour < start.hour:
                        continue
                    same_hour = same_day and hour == start.hour
                    for minute in cron.minutes:
                        if same_hour and minute < start.minute:
                            continue
                        yield dt.datetime(year, month, day, hour, minute)


def _instants(cron: Cron, wall: dt.datetime, zone: dt.tzinfo) -> list[float]:
    """The instants (epoch seconds) at which the wall time `wall` fires, by Debian's rules."""
    a = wall.replace(tzinfo=zone, fold=0)
    b = wall.replace(tzinfo=zone, fold=1)
    off_a, off_b = a.utcoffset(), b.utcoffset()
    if off_a == off_b:
        return [a.timestamp()]
    if off_a > off_b:
        # A repeated wall time (clocks went back): fixed-time jobs run at the first
        # occurrence only; wildcard jobs follow the wall clock and run at both.
        return [a.timestamp(), b.timestamp()] if cron.wildcard else [a.timestamp()]
    # A skipped wall time (clocks went forward): wildcard jobs do not run for it;
    # fixed-time jobs run right after the change.
    if cron.wildcard:
        return []
    return [_transition(wall, off_a, off_b, zone)]


def _transition(wall: dt.datetime, before: dt.timedelta, after: dt.timedelta,
                zone: dt.tzinfo) -> float:
    """The instant the offset changed from `before` to `after` around a skipped `wall`."""
    naive_utc = wall.replace(tzinfo=UTC)
    lo = int((naive_utc - after).timestamp())  # still on the old offset
    hi = int((naive_utc - before).timestamp())  # already on the new offset
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if dt.datetime.fromtimestamp(mid, zone).utcoffset() == after:
            hi = mid
        else:
            lo = mid
    return float(hi)


def next_fire(cron: Cron, after: dt.datetime, zone: dt.tzinfo) -> dt.datetime | None:
    """The first fire strictly after `after`, in `zone`; None when it can never fire.

    >>> import zoneinfo
    >>> c = parse_cron("30 2 * * *")
    >>> berlin = zoneinfo.ZoneInfo("Europe/Berlin")
    >>> # 2026-03-29 02:30 does not exist in Berlin: it runs at 03:00 CEST, right after the change
    >>> next_fire(c, dt.datetime(2026, 3, 29, 0, 0, tzinfo=berlin), berlin).isoformat()
    '2026-03-29T03:00:00+02:00'
    """
    if not can_fire(cron):
        return None
    after_ts = after.timestamp()
    local = dt.datetime.fromtimestamp(after_ts, zone)
    start = local.replace(tzinfo=None, second=0, microsecond=0, fold=0)
    # In the first pass of a repeated hour, a wall time earlier than now may still fire
    # later (in the second pass), so look back over the repeated interval.
    lookback = local.fold == 0 and local.replace(fold=1).utcoffset() != local.utcoffset()
    if lookback:
        start -= _MAX_SHIFT
    best: float | None = None
    stop: dt.datetime | None = None
    for wall in wall_times(cron, start):
        if stop is not None and wall > stop:
            break
        for ts in _instants(cron, wall, zone):
            if ts > after_ts and (best is None or ts < best):
                best = ts
        if best is not None:
            # Outside a repeated interval, wall order is instant order, and a skipped
            # wall time maps to the change itself, which no later wall time precedes.
            if not lookback:
                break
            if stop is None:
                stop = max(wall, start + _MAX_SHIFT) + _MAX_SHIFT
    if best is None:
        return None
    return dt.datetime.fromtimestamp(best, zone)


def fire_times(cron: Cron, after: dt.datetime, zone: dt.tzinfo) -> Iterator[dt.datetime]:
    """Every fire strictly after `after`, in order."""
    t = after
    while (t := next_fire(cron, t, zone)) is not None:
        yield t


def fires_between(cron: Cron, start: dt.datetime, end: dt.datetime,
                  zone: dt.tzinfo) -> Iterator[dt.datetime]:
    """Fires in the half-open interval (start, end]."""
    for t in fire_times(cron, start, zone):
        if t > end:
            return
        yield t


def count_fires(cron: Cron, start: float, end: float, zone: dt.tzinfo) -> int:
    """How many fires fall in (start, end], without walking each one.

    A whole day without an offset change has len(hours) * len(minutes) fires if it matches;
    the partial first and last days and days with a DST change are walked fire by fire.
    """
    if end <= start or not can_fire(cron):
        return 0
    per_day = len(cron.hours) * len(cron.minutes)
    months = set(cron.months)
    count = 0
    day = dt.datetime.fromtimestamp(start, zone).date()
    last = dt.datetime.fromtimestamp(end, zone).date()
    while day <= last:
        nxt = day + dt.timedelta(days=1)
        lo = dt.datetime(day.year, day.month, day.day, tzinfo=zone)
        hi = dt.datetime(nxt.year, nxt.month, nxt.day, tzinfo=zone)
        lo_ts, hi_ts = lo.timestamp(), hi.timestamp()
        if start < lo_ts and hi_ts <= end and lo.utcoffset() == hi.utcoffset():
            if day.month in months:
                first_weekday, length = calendar.monthrange(day.year, day.month)
                if day.day in _month_days(cron.days, cron.weekdays, cron.day_or, length,
                                          (first_weekday + 1) % 7):
                    count += per_day
        else:
            a = dt.datetime.fromtimestamp(max(start, lo_ts - 0.5), zone)
            b = dt.datetime.fromtimestamp(min(end, hi_ts - 0.5), zone)
            count += sum(1 for _ in fires_between(cron, a, b, zone))
        day = nxt
    return count


def load_zone(name: str | None) -> dt.tzinfo:
    """The IANA zone `name`, or the system's zone (TZ, then /etc/localtime, else UTC)."""
    if name:
        return _zone(name)
    tz = os.environ.get("TZ", "").lstrip(":")
    if tz:
        try:
            return _zone(tz)
        except ValueError:
            pass
    return _system_zone()


@functools.lru_cache(maxsize=None)
def _zone(name: str) -> dt.tzinfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        hint = suggest.did_you_mean(name, zoneinfo.available_timezones(), n=1, quote=True)
        raise ValueError(f"unknown time zone {name!r} (an IANA name such as 'Europe/Berlin'){hint}") from None


@functools.lru_cache(maxsize=1)
def _system_zone() -> dt.tzinfo:
    try:
        with open("/etc/localtime", "rb") as f:
            return zoneinfo.ZoneInfo.from_file(f, key="localtime")
    except (OSError, ValueError):
        return UTC
