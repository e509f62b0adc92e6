"""A job's output as segments of text with CSS classes: ANSI colours kept, everything else inert.

Segments are (text, classes); templates escape the text and the live view sets it with
textContent, so output can never become markup. Colours are classes (fg1, bg4, fg208...), not
style attributes, which the Content-Security-Policy forbids.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# CSI sequences (colours, cursor moves, clears), OSC sequences (titles, links) and two-byte escapes.
_ESCAPE = re.compile(r"\x1b\[([0-9;:?]*)([@-~])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]?")
# Controls other than newline and tab are shown as \xNN (a carriage return before a newline is dropped).
_CONTROL = re.compile(r"\r(?=\n)|[\x00-\x08\x0b-\x1f\x7f]")


@dataclass
class State:
    """The SGR state: what colours and attributes the next character has."""

    fg: int | None = None  # 0-255
    bg: int | None = None
    attrs: set[str] = field(default_factory=set)  # b (bold), d (dim), i, u

    def classes(self) -> str:
        names = sorted(self.attrs)
        if self.fg is not None:
            names.append(f"fg{self.fg}")
        if self.bg is not None:
            names.append(f"bg{self.bg}")
        return " ".join(names)

    def apply(self, params: str) -> None:
        codes = [int(p) if p.isdigit() else 0 for p in re.split("[;:]", params)] if params else [0]
        i = 0
        while i < len(codes):
            c = codes[i]
            if c == 0:
                self.fg = self.bg = None
                self.attrs.clear()
            elif c in _ATTRS:
                self.attrs.add(_ATTRS[c])
            elif c == 22:
                self.attrs -= {"b", "d"}
            elif c in (23, 24):
                self.attrs.discard("i" if c == 23 else "u")
            elif 30 <= c <= 37:
                self.fg = c - 30
            elif 90 <= c <= 97:
                self.fg = c - 90 + 8
            elif 40 <= c <= 47:
                self.bg = c - 40
            elif 100 <= c <= 107:
                self.bg = c - 100 + 8
            elif c == 39:
                self.fg = None
            elif c == 49:
                self.bg = None
            elif c in (38, 48):
                colour, used = _extended(codes[i + 1:])
                i += used
                if colour is not None:
                    if c == 38:
                        self.fg = colour
                    else:
                        self.bg = colour
            i += 1


_ATTRS = {1: "b", 2: "d", 3: "i", 4: "u"}


def _extended(rest: list[int]) -> tuple[int | None, int]:
    """38;5;N or 38;2;R;G;B: the 256-colour index, and how many codes it used."""
    if rest[:1] == [5] and len(rest) >= 2:
        return min(max(rest[1], 0), 255), 2
    if rest[:1] == [2] and len(rest) >= 4:
        r, g, b = (min(max(v, 0), 255) for v in rest[1:4])
        return 16 + 36 * round(r / 51) + 6 * round(g / 51) + round(b / 51), 4
    return None, len(rest[:1])


def _visible(text: str) -> str:
    return _CONTROL.sub(lambda m: "" if m.group(0) == "\r" else f"\\x{ord(m.group(0)):02x}", text)


def segments(text: str, state: State | None = None) -> list[tuple[str, str]]:
    """`text` as (text, classes) runs; `state` carries colours over from earlier text."""
    state = state if state is not None else State()
    out: list[tuple[str, str]] = []
    pos = 0
    for m in _ESCAPE.finditer(text):
        if m.start() > pos:
            out.append((_visible(text[pos:m.start()]), state.classes()))
        if m.group(2) == "m":
            state.apply(m.group(1))
        pos = m.end()
    if pos < len(text):
        out.append((_visible(text[pos:]), state.classes()))
    return [seg for seg in out if seg[0]]


def state_after(text: str) -> State:
    """The SGR state at the end of `text` (to render the part that follows it)."""
    state = State()
    for m in _ESCAPE.finditer(text):
        if m.group(2) == "m":
            state.apply(m.group(1))
    return state


def palette_css() -> str:
    """CSS classes for the 256 colours (xterm's palette), foreground and background."""
    base = ["#000000", "#cd3131", "#0dbc79", "#e5e510", "#2472c8", "#bc3fbc", "#11a8cd", "#e5e5e5",
            "#666666", "#f14c4c", "#23d18b", "#f5f543", "#3b8eea", "#d670d6", "#29b8db", "#ffffff"]
    colours = list(base)
    steps = [0, 95, 135, 175, 215, 255]
    colours += [f"#{steps[r]:02x}{steps[g]:02x}{steps[b]:02x}" for r in range(6) for g in range(6) for b in range(6)]
    colours += [f"#{v:02x}{v:02x}{v:02x}" for v in range(8, 248, 10)]
    lines = [f".fg{i}{{color:{c}}}.bg{i}{{background:{c}}}" for i, c in enumerate(colours)]
    return "\n".join(lines) + "\n"
