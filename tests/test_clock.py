"""The clock module is the one place that reads the clocks or sleeps, and `poll` is the one
wait loop."""

import ast
import pathlib
import re

import pytest

from cronsup import clock

PACKAGE = pathlib.Path(clock.__file__).parent
# What the grep looks for, plus the other spellings of a clock read. `self.now()`
# (a clock handed in) and `clock.now()` (the clock module itself) are not reads elsewhere.
_TEXT = re.compile(r"\btime\.(time|monotonic|sleep|perf_counter|time_ns|monotonic_ns|clock_gettime)\b"
                   r"|\b(datetime|date)\.(now|utcnow|today)\(|(?<!self)(?<!clock)\.now\(")
_ATTRS = {"now", "utcnow", "today"}


class _FakeTime:
    """A monotonic clock that moves only when slept on."""

    def __init__(self):
        self.t = 100.0
        self.slept: list[float] = []

    def mono(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        self.t += seconds


def clock_reads(source: str) -> list[str]:
    """'LINE: what' for each import of `time` and each read of a clock in `source`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [f"{node.lineno}: import {a.name}" for a in node.names if a.name == "time"]
        elif isinstance(node, ast.ImportFrom) and node.module == "time":
            found.append(f"{node.lineno}: from time import ...")
        elif isinstance(node, ast.Attribute) and node.attr in _ATTRS:
            owner = node.value.attr if isinstance(node.value, ast.Attribute) else getattr(node.value, "id", "")
            if owner in ("datetime", "date"):
                found.append(f"{node.lineno}: {owner}.{node.attr}")
    for n, line in enumerate(source.splitlines(), 1):
        if _TEXT.search(line.split("#", 1)[0]):
            found.append(f"{n}: {line.strip()}")
    return found


def test_no_module_but_clock_reads_a_clock_or_sleeps():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "clock.py" and path.parent == PACKAGE:
            continue
        offenders += [f"{path.relative_to(PACKAGE.parent)}:{hit}" for hit in clock_reads(path.read_text())]
    assert offenders == []


@pytest.mark.parametrize("source", [
    "import time\n", "from time import monotonic\n", "import datetime as dt\nx = dt.datetime.now()\n",
    "from datetime import datetime\nx = datetime.now(tz)\n", "x = datetime.date.today()\n",
    "import os\nt = time.perf_counter()\n", "from cronsup import clock\ntime.sleep(1)\n",
    "x = dt.datetime.utcnow()\n",
])
def test_the_source_check_finds_each_way_of_reading_a_clock(source):
    assert clock_reads(source)


def test_the_source_check_leaves_a_clock_handed_in_alone():
    assert clock_reads("now = self.now()\nwall = clock.wall()\nt = dt.datetime.fromtimestamp(t)\n") == []


def test_poll_looks_at_once_and_then_after_each_interval():
    fake = _FakeTime()
    looks = []
    for n in clock.poll(0.5, sleep=fake.sleep, mono=fake.mono):
        looks.append((n, fake.t))
        if n == 3:
            break
    assert looks == [(0, 100.0), (1, 100.5), (2, 101.0), (3, 101.5)]


def test_poll_waits_first_when_asked():
    fake = _FakeTime()
    first = next(iter(clock.poll(0.5, first=False, sleep=fake.sleep, mono=fake.mono)))
    assert (first, fake.t) == (0, 100.5)


def test_poll_ends_at_its_deadline_with_a_last_look_there():
    fake = _FakeTime()
    times = [fake.t for _ in clock.poll(0.4, 1.0, sleep=fake.sleep, mono=fake.mono)]
    assert times == pytest.approx([100.0, 100.4, 100.8, 101.0])
    assert fake.slept == pytest.approx([0.4, 0.4, 0.2])


def test_poll_takes_a_deadline_shared_with_other_waits():
    fake = _FakeTime()
    deadline = clock.Deadline(1.0, mono=fake.mono)
    fake.sleep(0.7)
    assert deadline.left() == pytest.approx(0.3) and not deadline.passed()
    assert len(list(clock.poll(0.2, deadline, sleep=fake.sleep, mono=fake.mono))) == 3
    assert deadline.passed() and deadline.left() == 0.0


def test_a_deadline_of_none_never_passes():
    deadline = clock.Deadline(None)
    assert deadline.left() is None and not deadline.passed()


def test_poll_sleeps_for_real_by_default():
    start = clock.mono()
    assert len(list(clock.poll(0.02, 0.1))) >= 2
    assert clock.mono() - start >= 0.1
