"""Human-facing text: times, durations, tables, colours, and output made safe for a terminal."""

from __future__ import annotations

import datetime as dt
import re

import click

from cronsup.model import RunStatus
from cronsup.units import format_duration, format_size  # noqa: F401 (re-exported)

_STATUS_COLOURS = {
    RunStatus.SUCCESS: "green",
    RunStatus.RUNNING: "cyan",
    RunStatus.SKIPPED: "yellow",
    RunStatus.MISSED: "yellow",
}
# C0 controls but newline and tab, DEL, and C1 controls: a job's output must not move the
# cursor, clear the screen or forge lines of ours on a terminal.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def local(t: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).astimezone()


def when(t: float | None, now: float) -> str:
    """A compact absolute time: '14:30' today, 'Tue 02:00' this week, '2026-12-01 02:00'."""
    if t is None:
        return "-"
    moment, today = local(t), local(now)
    if moment.date() == today.date():
        return moment.strftime("%H:%M")
    if abs((moment.date() - today.date()).days) < 7:
        return moment.strftime("%a %H:%M")
    return moment.strftime("%Y-%m-%d %H:%M")


def relative(t: float, now: float) -> str:
    """'in 3h05m' or '12m ago'."""
    delta = t - now
    text = format_duration(abs(delta)) if abs(delta) >= 1 else "now"
    if text == "now":
        return text
    return f"in {_coarse(text)}" if delta > 0 else f"{_coarse(text)} ago"


def _coarse(text: str) -> str:
    # 3m05s -> 3m, 2h10m stays: enough precision for a glance.
    return re.sub(r"^(\d+m)\d+s$", r"\1", text)


def took(seconds: float | None) -> str:
    return "-" if seconds is None else format_duration(seconds)


def status(value: RunStatus | str, colour: bool = True) -> str:
    value = RunStatus(value)
    text = str(value)
    if not colour:
        return text
    return click.style(text, fg=_STATUS_COLOURS.get(value, "red"), bold=value is not RunStatus.SUCCESS)


def cut(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def table(headers: list[str], rows: list[list[str]], widths: list[int | None],
          right: set[int] = frozenset()) -> list[str]:
    """Columns padded to their widest cell (capped by `widths`); styled cells keep their width."""
    cells = [[cut(c, w) if w else c for c, w in zip(row, widths)] for row in rows]
    sizes = [max([len(click.unstyle(r[i])) for r in cells] + [len(h)]) for i, h in enumerate(headers)]
    lines = []
    for row in [headers] + cells:
        parts = []
        for i, cell in enumerate(row):
            pad = " " * (sizes[i] - len(click.unstyle(cell)))
            parts.append(pad + cell if i in right else cell + pad)
        lines.append("  ".join(parts).rstrip())
    return lines


def safe_output(data: bytes, escape: bool) -> str:
    """Captured output as text; on a terminal, control characters are shown as escapes."""
    text = data.decode("utf-8", errors="replace")
    if not escape:
        return text
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group(0)):02x}", text)
