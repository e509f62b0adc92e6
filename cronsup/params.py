"""A run's own environment: `--env KEY=VALUE` parameters (checked here) and the CRONSUP_* variables."""

from __future__ import annotations

import datetime as dt
import re

# Names cron sets or reads itself, and cronsup's own: a parameter may not replace them
# (a run with another PATH or HOME is another job; CRONSUP_* describe the run).
RESERVED = frozenset({"PATH", "HOME", "SHELL", "LOGNAME", "USER", "MAILTO"})
RESERVED_PREFIX = "CRONSUP_"
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_PARAMS = 32
MAX_NAME = 128
MAX_VALUE = 1024  # and the whole request stays under MAX_REQUEST
MAX_REQUEST = 4096  # control.MAX_REQUEST (control imports this module)


class ParamError(ValueError):
    """A parameter that cannot be passed; the message says why."""


def check_name(name: str) -> None:
    """Raise ParamError unless `name` may be a run parameter."""
    if not isinstance(name, str) or not name:
        raise ParamError("a parameter needs a name, as in DAY=2026-11-30")
    if "\0" in name:
        raise ParamError(f"{name!r}: a name cannot contain a NUL byte")
    if len(name) > MAX_NAME:
        raise ParamError(f"{name[:40]!r}...: a name is at most {MAX_NAME} characters")
    if not NAME.fullmatch(name):
        raise ParamError(f"{name!r} is not a valid variable name (letters, digits and _, "
                         "not starting with a digit)")
    if name in RESERVED:
        raise ParamError(f"{name} is set by cron for every job and cannot be a parameter "
                         "(set it in the jobs file instead)")
    if name.startswith(RESERVED_PREFIX):
        raise ParamError(f"{name}: CRONSUP_* variables are set by cronsup for every run and "
                         "cannot be parameters")


def check_value(name: str, value: str) -> None:
    if not isinstance(value, str):
        raise ParamError(f"{name}: the value must be a string")
    if "\0" in value:
        raise ParamError(f"{name}: a value cannot contain a NUL byte")
    if len(value) > MAX_VALUE:
        raise ParamError(f"{name}: a value is at most {MAX_VALUE} characters")


def parse(items: tuple[str, ...] | list[str]) -> tuple[tuple[str, str], ...]:
    """`KEY=VALUE` words as (key, value) pairs, in order (a repeated KEY: the last wins).

    >>> parse(["DAY=2026-11-30", "MODE=full=yes"])
    (('DAY', '2026-11-30'), ('MODE', 'full=yes'))
    """
    found: dict[str, str] = {}
    for item in items:
        if "=" not in item:
            raise ParamError(f"{item!r} is not KEY=VALUE (as in DAY=2026-11-30)")
        name, value = item.split("=", 1)
        check_name(name)
        check_value(name, value)
        found.pop(name, None)
        found[name] = value
    if len(found) > MAX_PARAMS:
        raise ParamError(f"at most {MAX_PARAMS} parameters")
    return tuple(found.items())


def from_request(value: object) -> tuple[tuple[str, str], ...]:
    """The "env" field of a control request (a JSON object of strings), checked as `parse`."""
    if not isinstance(value, dict):
        raise ParamError("env must be an object of NAME: value strings")
    if len(value) > MAX_PARAMS:
        raise ParamError(f"at most {MAX_PARAMS} parameters")
    for name, text in value.items():
        check_name(name)
        check_value(name, text)
    return tuple(value.items())


def scheduled_text(t: float, zone: dt.tzinfo) -> str:
    """A scheduled time as CRONSUP_SCHEDULED_FOR: ISO 8601 in the job's zone, with its offset.

    The offset comes from the instant, so both passes of a repeated hour are told apart.
    """
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).astimezone(zone).isoformat(timespec="seconds")


def run_environment(job: str, run_id: int, attempt: int, trigger: str, scheduled_for: float,
                    zone: dt.tzinfo, params: tuple[tuple[str, str], ...] = ()) -> dict[str, str]:
    """What a run adds to its job's environment: its parameters, then CRONSUP_* (set last,
    so neither the jobs file nor a parameter can change them)."""
    env = dict(params)
    env.update({
        "CRONSUP_JOB": job,
        "CRONSUP_RUN_ID": str(run_id),
        "CRONSUP_ATTEMPT": str(attempt),
        "CRONSUP_TRIGGER": trigger,
        "CRONSUP_SCHEDULED_FOR": scheduled_text(scheduled_for, zone),
    })
    return env
