"""The one place that reads the clocks and sleeps. Everything else is handed a `Now`, or
these functions, and waits with `poll`."""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable, Iterator

from cronsup.model import Now

# For tests only: CRONSUP_TEST_CLOCK_OFFSET=SECONDS moves this process's wall clock (not the
# monotonic one), so a test can stop a daemon "at 17:57:12" and start it "at 17:59:19" without
# waiting for real minutes. A bad value is ignored.
try:
    _OFFSET = float(os.environ.get("CRONSUP_TEST_CLOCK_OFFSET", "0"))
except ValueError:
    _OFFSET = 0.0


def test_offset() -> float:
    """The CRONSUP_TEST_CLOCK_OFFSET in force (0.0 in any real use)."""
    return _OFFSET


def now() -> Now:
    return Now(wall=time.time() + _OFFSET, mono=time.monotonic())


def wall() -> float:
    return time.time() + _OFFSET


def mono() -> float:
    return time.monotonic()


def sleep(seconds: float) -> None:
    time.sleep(seconds)


def cpu() -> float:
    """This process's CPU seconds (the web view's Server-Timing, for benchmarks on a loaded host)."""
    return time.process_time()


def local_now(zone: dt.tzinfo) -> dt.datetime:
    """The wall clock as an aware datetime in `zone`."""
    return dt.datetime.fromtimestamp(wall(), zone)


def boot_time() -> float:
    """When the host booted, in whole seconds of wall time (not moved by the test offset).

    What psutil.boot_time() reads from /proc/stat (wall time minus time since boot), from two
    clock reads instead of a file: a spawn must stay cheap.
    """
    return float(int(time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)))


def boot_ns() -> int:
    """CLOCK_BOOTTIME in nanoseconds: the clock the kernel stamps a new process's start with."""
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME)


class Deadline:
    """`seconds` from now on the monotonic clock; None: never."""

    def __init__(self, seconds: float | None, mono: Callable[[], float] = mono):
        self._mono = mono
        self.at = None if seconds is None else mono() + seconds

    def left(self) -> float | None:
        """Seconds until it passes (0 once it has); None for a deadline that never passes."""
        return None if self.at is None else max(0.0, self.at - self._mono())

    def passed(self) -> bool:
        return self.at is not None and self._mono() >= self.at


def poll(every: float, deadline: float | Deadline | None = None, *, first: bool = True,
         sleep: Callable[[float], None] = sleep, mono: Callable[[], float] = mono) -> Iterator[int]:
    """The one wait loop: yield (the look's number, from 0) at once, then after each `every`
    seconds, until `deadline` (seconds from now, or a Deadline) passes; forever without one.

    The caller looks at what it waits for at each yield and breaks out when it is there.
    `first=False` sleeps before the first look too. The last sleep is cut short at the
    deadline, so there is always a look at it.
    """
    if not isinstance(deadline, Deadline):
        deadline = Deadline(deadline, mono)
    n = 0
    if not first:
        sleep(every if deadline.at is None else min(every, deadline.left()))
    while True:
        yield n
        n += 1
        left = deadline.left()
        if left is not None and left <= 0:
            return
        sleep(every if left is None else min(every, left))
