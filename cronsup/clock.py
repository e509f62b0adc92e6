"""The one place that reads the clocks. Everything else is handed a `Now`."""

from __future__ import annotations

import time

from cronsup.model import Now


def now() -> Now:
    return Now(wall=time.time(), mono=time.monotonic())


def wall() -> float:
    return time.time()


def sleep(seconds: float) -> None:
    time.sleep(seconds)
