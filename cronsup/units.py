"""Durations ("1h30m") and sizes ("64KiB") as people write them, to seconds and bytes and
back, and signal numbers as names."""

from __future__ import annotations

import math
import re
import signal

_DURATION_UNITS = {"w": 604800.0, "d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|w|d|h|m|s)")
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]i?b|b)?", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
}


# Beyond any job's horizon, and well within what datetime and the run log can hold: TOML
# allows inf and nan, and a 20-digit number of days, that would otherwise reach them.
MAX_DURATION = 100 * 365.25 * 86400.0
MAX_SIZE = 1 << 50  # 1 PiB


def parse_duration(value: str | int | float) -> float:
    """Seconds in "90s", "5m", "1h30m", "2d", "250ms", "1.5h" or a plain number of seconds.

    >>> parse_duration("1h30m")
    5400.0
    """
    seconds = _parse_duration(value)
    if not math.isfinite(seconds) or seconds > MAX_DURATION:
        raise ValueError(f"the duration {value!r} is out of range: at most 100 years")
    return seconds


def _parse_duration(value: str | int | float) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a duration such as \"90s\", \"5m\" or \"1h30m\", not a boolean")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"a duration cannot be negative: {value}")
        return float(value)
    text = value.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    pos, total, seen = 0, 0.0, []
    for m in _DURATION_PART.finditer(text):
        if m.start() != pos:
            break
        unit = m.group(2)
        if unit in seen:
            break
        seen.append(unit)
        total += float(m.group(1)) * _DURATION_UNITS[unit]
        pos = m.end()
    if not text or pos != len(text):
        raise ValueError(
            f"bad duration {value!r}: write a number with a unit, such as \"90s\", \"5m\", "
            "\"1h30m\" or \"2d\" (units w d h m s ms), or a number of seconds"
        )
    return total


def parse_size(value: str | int | float) -> int:
    """Bytes in "64KiB", "1MiB", "1GB", "512" or a plain number of bytes.

    >>> parse_size("64KiB")
    65536
    """
    size = _parse_size(value)
    if size > MAX_SIZE:
        raise ValueError(f"the size {value!r} is out of range: at most 1 PiB")
    return size


def _parse_size(value: str | int | float) -> int:
    if isinstance(value, bool):
        raise ValueError("expected a size such as \"64KiB\" or \"1MiB\", not a boolean")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"a size cannot be negative: {value}")
        if not math.isfinite(value):
            raise ValueError(f"the size {value!r} is out of range: at most 1 PiB")
        return int(value)
    m = _SIZE.fullmatch(value.strip())
    if not m:
        raise ValueError(
            f"bad size {value!r}: write a number with a unit, such as \"64KiB\", \"1MiB\" or "
            "\"1GB\" (B, kB, MB, GB, KiB, MiB, GiB), or a number of bytes"
        )
    return int(float(m.group(1)) * _SIZE_UNITS[(m.group(2) or "b").lower()])


def format_duration(seconds: float, coarse: bool = False) -> str:
    """A short human duration: 0.4s, 12s, 3m05s, 2h10m, 3d4h.

    `coarse`, for a glance: no fractions, never under 1s, minutes without seconds (4s, 3m,
    1h05m, 2d3h).

    >>> format_duration(185)
    '3m05s'
    >>> format_duration(185, coarse=True)
    '3m'
    """
    if seconds < 10 and not coarse:
        return f"{seconds:.1f}s"
    s = max(int(round(seconds)), 1) if coarse else int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m" if coarse else f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600}h"


def signal_name(sig: int) -> str:
    """'SIGTERM', or 'signal 99' for a number that names none."""
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def format_size(n: int) -> str:
    """1536 -> '1.5KiB'."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1024
    return f"{n}B"
