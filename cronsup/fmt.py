"""Human-facing text: times, durations, tables, colours, and output made safe for a terminal."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import sys
from dataclasses import dataclass

import click

from cronsup.model import RunStatus
from cronsup.units import format_duration, format_size, signal_name  # noqa: F401 (re-exported)

_STATUS_COLOURS = {
    RunStatus.SUCCESS: "green",
    RunStatus.RUNNING: "cyan",
    RunStatus.SKIPPED: "yellow",
    RunStatus.MISSED: "yellow",
}
# C0 controls but newline and tab, DEL, and C1 controls: a job's output must not move the
# cursor, clear the screen or overwrite lines (\r) on a terminal. Unicode line separators and
# bidirectional overrides are escaped too: they could make output look like lines of ours.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")
ELLIPSIS = "…"


def local(t: float) -> dt.datetime:
    """The local wall-clock time of an instant, for display (naive: cheaper, same digits)."""
    return dt.datetime.fromtimestamp(t)


def when(t: float | None, now: float) -> str:
    """A compact absolute time: '14:30' today, 'Tue 02:00' within a week, '12-01 02:00' this
    year or next, '2028-01-01' further off."""
    if t is None:
        return "-"
    moment, today = local(t), local(now)
    days = abs((moment.date() - today.date()).days)
    if days == 0:
        return moment.strftime("%H:%M")
    if days < 7:
        return moment.strftime("%a %H:%M")
    if days < 300:
        return moment.strftime("%m-%d %H:%M")
    return moment.strftime("%Y-%m-%d")


def stamp(t: float, now: float) -> str:
    """A run's start as in syslog: 'Nov 26 00:50:10', with the year when it is not this one."""
    moment = local(t)
    if moment.year == local(now).year:
        return moment.strftime("%b %d %H:%M:%S")
    return moment.strftime("%Y-%m-%d %H:%M")


def relative(t: float, now: float) -> str:
    """'in 3h05m' or '12m ago', coarse enough for a glance: 'in 2s', 'in 4m', '3d ago'."""
    delta = t - now
    if 0 <= delta < 1:
        return "now"
    text = format_duration(abs(delta), coarse=True)
    return f"in {text}" if delta > 0 else f"{text} ago"


def took(seconds: float | None) -> str:
    return "-" if seconds is None else format_duration(seconds)


def exit_text(exit_code: int | None, sig: int | None) -> str:
    """'3', 'SIGTERM', or '' when the run has neither (never started, still running)."""
    if sig:
        return signal_name(sig)
    return "" if exit_code is None else str(exit_code)


def status(value: RunStatus | str, colour: bool = True) -> str:
    value = RunStatus(value)
    text = str(value)
    if not colour:
        return text
    return click.style(text, fg=_STATUS_COLOURS.get(value, "red"), bold=value is not RunStatus.SUCCESS)


def cut(text: str, width: int) -> str:
    """One line of at most `width` characters; leading indentation is kept."""
    indent = len(text) - len(text.lstrip(" "))
    text = " " * indent + " ".join(text.split())
    return text if len(text) <= width else text[: max(0, width - 1)] + ELLIPSIS


def width() -> int | None:
    """The width to fit tables to: the terminal's (or $COLUMNS); None (no limit) in a pipe."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    if sys.stdout.isatty():
        return shutil.get_terminal_size((80, 24)).columns
    return None


@dataclass
class Column:
    """A table column. `shrink`: its cells may be cut (to no less than `least`) to fit the width;
    `wrap`: a cell too long for it gets a line of its own instead of being cut; `fold` (the
    last column only): a cell too long for it goes on under itself, over as many lines as it needs."""

    header: str
    right: bool = False
    shrink: bool = False
    least: int = 8
    wrap: bool = False
    gap: int = 2  # spaces before this column
    limit: int | None = None  # never wider than this, whatever the room
    fold: bool = False  # the last column: a long cell goes on over lines of its own


def table(columns: list[Column], rows: list[list[str] | str], total: int | None = None) -> list[str]:
    """Rows padded to their columns, fitted into `total` characters when it is given.

    A row that is a string is a note under the row before it, printed as it is (cut to fit).
    Styled (coloured) cells keep their width. To fit, shrinkable columns give up room, the
    widest first, down to their `least`; a wrapping column's long cell then goes on a line of
    its own above the rest of its row, so a job name is never cut.
    """
    cells = [r for r in rows if not isinstance(r, str)]
    lengths = [[_len(c) for c in r] for r in cells]
    sizes = []
    for i, col in enumerate(columns):
        size = max([n[i] for n in lengths] + [len(col.header)])
        sizes.append(min(size, col.limit) if col.limit else size)
    if total is not None:
        excess = sum(sizes) + sum(c.gap for c in columns[1:]) - total
        while excess > 0:
            candidates = [i for i, c in enumerate(columns) if c.shrink and sizes[i] > max(c.least, len(c.header))]
            if not candidates:
                break
            i = max(candidates, key=lambda k: sizes[k])
            sizes[i] -= 1
            excess -= 1
    lines = []
    header = [c.header for c in columns]
    by_row = iter([[len(h) for h in header]] + lengths)
    for row in [header] + rows:
        if isinstance(row, str):
            lines.append(cut(row, total) if total else row)
            continue
        parts, more = [], []
        widths = next(by_row)
        for i, (cell, col) in enumerate(zip(row, columns)):
            if widths[i] > sizes[i]:
                if col.wrap and i == 0:
                    lines.append(cell)
                    cell = ""
                elif col.fold and i == len(columns) - 1 and sizes[i] > 0:
                    import textwrap

                    cell, *more = textwrap.wrap(click.unstyle(cell), sizes[i]) or [""]
                else:
                    cell = cut(click.unstyle(cell), sizes[i])
                widths[i] = _len(cell)
            pad = " " * (sizes[i] - widths[i])
            text = pad + cell if col.right else cell + pad
            parts.append((" " * col.gap if i else "") + text)
        lines.append("".join(parts).rstrip())
        if more:
            indent = sum(sizes[:-1]) + sum(c.gap for c in columns[1:])
            lines += [" " * indent + piece for piece in more]
    return lines


def _len(cell: str) -> int:
    return len(click.unstyle(cell)) if "\x1b" in cell else len(cell)


def dump_json(value) -> str:
    """JSON for a person on a terminal (indented) or for a script in a pipe (one line).

    The one-line form is also much faster: json's C encoder does not indent.
    """
    import json

    if sys.stdout.isatty():
        return json.dumps(value, indent=2)
    return json.dumps(value)


def safe_output(data: bytes, escape: bool) -> str:
    """Captured output as text; on a terminal, control characters are shown as escapes.

    >>> safe_output(b"ok\\x1b[2J\\r\\n", escape=True)
    'ok\\\\x1b[2J\\\\x0d\\n'
    """
    text = data.decode("utf-8", errors="replace")
    if not escape:
        return text
    return _CONTROL.sub(_escape, text)


def _escape(m: re.Match) -> str:
    code = ord(m.group(0))
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
