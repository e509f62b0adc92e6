"""The TOML option keys of `[defaults]` and `[job.NAME]`: each key's type and validation."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from cronsup import suggest
from cronsup.model import Catchup, MailOn, OnLost, Overlap, Scope
from cronsup.schedule import load_zone
from cronsup.units import parse_duration, parse_size

_JOB_NAME = re.compile(r"[A-Za-z0-9_-]+")
_ENV_NAME = re.compile(r"[^\s=\0]+")
_USER = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.-]*\$?")


def _type_name(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "a table"}.get(type(value), type(value).__name__)


# What exec can carry: a C string holds no NUL, and Linux takes one argument or one
# environment string of at most MAX_ARG_STRLEN (32 pages) bytes, a path of PATH_MAX.
MAX_ARG = 128 * 1024 - 1
PATH_MAX = 4095
NAME_MAX = 255
LOGIN_NAME_MAX = 255


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {_type_name(value)}")
    if "\0" in value:
        raise ValueError("a NUL character (\\u0000) cannot be passed to a program")
    if len(value.encode("utf-8", "surrogateescape")) > MAX_ARG:
        raise ValueError(f"too long: at most {MAX_ARG} bytes")
    return value


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {_type_name(value)}")
    return value


def _duration(value: Any) -> float:
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise ValueError(f"expected a duration such as \"90s\", \"5m\" or \"1h30m\", got "
                         f"{_type_name(value)}")
    return parse_duration(value)


def _timeout(value: Any) -> float | None:
    # "none" or 0 switch a timeout from [defaults] off, as TimeoutSec=0 does in systemd.
    if isinstance(value, str) and value.strip().lower() in ("none", "off"):
        return None
    seconds = _duration(value)
    return seconds or None


def _size(value: Any) -> int:
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise ValueError(f"expected a size such as \"64KiB\" or \"1MiB\", got {_type_name(value)}")
    return parse_size(value)


def _count(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"expected an integer, got {_type_name(value)}")
    if value < 0:
        raise ValueError(f"must be 0 or more, got {value}")
    return value


def _backoff(value: Any) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ValueError(f"expected a number, got {_type_name(value)}")
    if not value >= 1:  # nan fails this too
        raise ValueError(f"must be 1 or more (1 keeps the delay constant), got {value}")
    if value > 1000:
        raise ValueError(f"must be at most 1000, got {value}")
    return float(value)


def _enum(kind: type) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        choices = ", ".join(f'"{m.value}"' for m in kind)
        if not isinstance(value, str):
            raise ValueError(f"expected one of {choices}, got {_type_name(value)}")
        try:
            return kind(value.lower())
        except ValueError:
            hint = suggest.did_you_mean(value, [m.value for m in kind], n=1, quote=True)
            raise ValueError(f"{value!r} is not one of {choices}{hint}") from None
    return convert


def _codes(value: Any) -> tuple[int, ...]:
    if not isinstance(value, list) or not value:
        raise ValueError("expected a non-empty list of exit codes, such as [0, 1]")
    for code in value:
        if not isinstance(code, int) or isinstance(code, bool) or not 0 <= code <= 255:
            raise ValueError(f"{code!r} is not an exit code (an integer from 0 to 255)")
    return tuple(value)


def _after(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise ValueError(f"expected a list of job names, got {_type_name(value)}")
    for name in value:
        if not isinstance(name, str) or not _JOB_NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a job name")
    return tuple(dict.fromkeys(value))


def _env(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ValueError(f"expected a table such as {{ KEY = \"value\" }}, got {_type_name(value)}")
    for key, item in value.items():
        if not _ENV_NAME.fullmatch(key):
            raise ValueError(f"{key!r} is not an environment variable name")
        if not isinstance(item, str):
            raise ValueError(f"{key}: expected a string, got {_type_name(item)}")
        if "\0" in item:
            raise ValueError(f"{key}: a value cannot contain a NUL character")
        if len(f"{key}={item}".encode("utf-8", "surrogateescape")) > MAX_ARG:
            raise ValueError(f"{key}: too long: KEY=value is at most {MAX_ARG} bytes")
        # These two keep their cron meaning here too: the job's shell and zone.
        try:
            if key == "SHELL" and item:
                check_shell(item)
            if key == "CRON_TZ" and item:
                load_zone(item)
        except ValueError as e:
            raise ValueError(f"{key}: {e}") from None
    return dict(value)


def check_shell(path: str) -> None:
    """ValueError unless `path` can name a shell: cron execs it without searching PATH."""
    if not path.startswith("/"):
        raise ValueError(f"{_cut(path)} must be an absolute path (the shell is run without "
                         "searching PATH)")
    check_path_length(path)


def _path(value: Any) -> str:
    path = _string(value)
    if not path.startswith("/"):
        raise ValueError(f"{_cut(path)} must be an absolute path")
    check_path_length(path)
    return path


def _no_control(path: str) -> None:
    # Linux allows a newline in a file name; a jobs file that names one is a mistake, and
    # every message naming the path is one line.
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in path):
        raise ValueError(f"{_cut(path)} contains a control character")


def check_path_length(path: str) -> None:
    """ValueError for a path the kernel would refuse as too long (ENAMETOOLONG), or one
    with a control character in it."""
    _no_control(path)
    if len(path.encode("utf-8", "surrogateescape")) > PATH_MAX:
        raise ValueError(f"{_cut(path)} is too long for a path (at most {PATH_MAX} bytes)")
    for part in path.split("/"):
        if len(part.encode("utf-8", "surrogateescape")) > NAME_MAX:
            raise ValueError(f"{_cut(path)}: a part of a path is at most {NAME_MAX} bytes")


def _user(value: Any) -> str:
    user = _string(value)
    if not _USER.fullmatch(user) or len(user) > LOGIN_NAME_MAX:
        raise ValueError(f"{_cut(user)} is not a user name")
    return user


def _cut(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")


def _hosts(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ValueError("expected a non-empty list of node names, such as [\"web1\", \"web2\"]")
    for name in value:
        if not isinstance(name, str) or not name or len(name) > 255 or any(
                c.isspace() or ord(c) < 0x20 for c in name):
            raise ValueError(f"{name!r} is not a node name")
    return tuple(dict.fromkeys(value))


def _lease(value: Any) -> float:
    seconds = _duration(value)
    if seconds < 1:
        raise ValueError("must be at least 1s (the owner heartbeats every lease/3)")
    return seconds


def _zone(value: Any) -> str:
    name = _string(value)
    load_zone(name)
    return name


# The events notify_on may name (SPEC section 4); `test` is sent only by `notify-test`.
NOTIFY_EVENTS = ("start", "success", "failure", "recovery", "retry", "skipped", "missed")


def _events(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise ValueError(f"expected a list of events such as [\"failure\", \"recovery\"], got "
                         f"{_type_name(value)}")
    for name in value:
        if not isinstance(name, str) or name not in NOTIFY_EVENTS:
            hint = suggest.did_you_mean(name, NOTIFY_EVENTS, n=1, quote=True) \
                if isinstance(name, str) else ""
            raise ValueError(f"{name!r} is not an event; events: {', '.join(NOTIFY_EVENTS)}{hint}")
    return tuple(dict.fromkeys(value))


def check_url(value: Any) -> str:
    """An http(s) URL, or `file:/path` naming a file that holds one (a secret kept out of the
    jobs file). Messages never repeat a URL's path or query: they are secrets."""
    from urllib.parse import urlsplit

    text = _string(value).strip()
    if text.startswith("file:"):
        path = text[len("file:"):]
        if path.startswith("//"):
            path = path[2:]
        if not path.startswith("/"):
            raise ValueError("file: must be followed by an absolute path, as in "
                             "\"file:/etc/cronsup/webhook-url\"")
        check_path_length(path)
        return "file:" + path
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ValueError("not a valid URL") from None
    if parts.scheme.lower() not in ("http", "https"):
        shown = f"{parts.scheme}:" if parts.scheme else "no scheme"
        raise ValueError(f"expected an http:// or https:// URL (or file:/path), got {shown}")
    if not parts.hostname:
        raise ValueError(f"the {parts.scheme} URL has no host")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in text):
        raise ValueError(f"the URL for {parts.scheme}://{parts.hostname} contains a space or "
                         "control character (percent-encode it)")
    return text


def _urls(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise ValueError(f"expected a URL or a list of URLs, got {_type_name(value)}")
    return tuple(dict.fromkeys(check_url(item) for item in value))


def _command(value: Any) -> str:
    command = _string(value)
    if not command.strip():
        raise ValueError("empty command")
    return command


SPECS: dict[str, Callable[[Any], Any]] = {
    "description": _string,
    "timeout": _timeout,
    "kill_grace": _duration,
    "overlap": _enum(Overlap),
    "retries": _count,
    "retry_delay": _duration,
    "retry_backoff": _backoff,
    "retry_max_delay": _duration,
    "retry_jitter": _bool,
    "success_codes": _codes,
    "after": _after,
    "env": _env,
    "workdir": _path,
    "user": _user,
    "shell": _path,
    "timezone": _zone,
    "jitter": _duration,
    "catchup": _enum(Catchup),
    "output_limit": _size,
    "mailto": _string,
    "enabled": _bool,
    "scope": _enum(Scope),
    "hosts": _hosts,
    "on_lost": _enum(OnLost),
    "lease": _lease,
    "notify_on": _events,
    "webhook": _urls,
    "webhook_secret_file": _path,
    "healthcheck": check_url,
    "notify_command": _command,
    "mail_on": _enum(MailOn),
}


def convert(key: str, value: Any) -> Any:
    """The typed value of option `key`; ValueError with a message a person can act on."""
    return SPECS[key](value)
