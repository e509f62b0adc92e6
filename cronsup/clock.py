"""The one place that reads the clocks. Everything else is handed a `Now`."""

from __future__ import annotations

import os
import time

from cronsup.model import Now

# For tests only: CRONSUP_TEST_CLOCK_OFFSET=SECONDS moves this process's wall clock (not the
# monotonic one), so a test can stop a daemon "at 17:57:12" and start it "at 17:59:19" without
# waiting for real minutes. A bad value is ignored.
try:
    _OFFSET = float(os.environ.get("CRONSUP_TEST_CLOCK_OFFSET", "0"))
except ValueError:
    _OFFSET = 0.0


def now() -> Now:
    return Now(wall=time.time() + _OFFSET, mono=time.monotonic())


def wall() -> float:
    return time.time() + _OFFSET


def sleep(seconds: float) -> None:
    time.sleep(seconds)
