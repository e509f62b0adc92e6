"""Telling whoever started the daemon how it is doing.

Under systemd (Type=notify), systemd's sd_notify protocol: datagrams of `KEY=value` lines
(READY=1, STATUS=..., WATCHDOG=1, STOPPING=1) to the socket named by $NOTIFY_SOCKET.
After `cronsup daemon --detach`, the command that detached waits on a pipe whose number is in
$CRONSUP_READY_FD, as s6's notification-fd protocol does: one newline once the daemon is
ready; end of file without it means the daemon exited while starting.
"""

from __future__ import annotations

import enum
import logging
import os
import selectors
import socket
from dataclasses import dataclass

from cronsup import clock

log = logging.getLogger("cronsup")

READY_FD = "CRONSUP_READY_FD"
SEND_TIMEOUT = 1.0  # a wedged receiver must not stall the loop (and so starve the watchdog)


class Notifier:
    """Sends to $NOTIFY_SOCKET when systemd set it (Type=notify); otherwise does nothing.

    READY=1 also releases a `--detach` launcher waiting on $CRONSUP_READY_FD.
    """

    def __init__(self, environ: dict[str, str] | None = None):
        env = os.environ if environ is None else environ
        self._sock: socket.socket | None = None
        self._address = _address(env.get("NOTIFY_SOCKET", ""))
        if self._address:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.settimeout(SEND_TIMEOUT)
        self._failing: str | None = None  # the last send error, reported once
        self._ready_fd = _fd(env.get(READY_FD, ""))
        self.watchdog_interval = _watchdog_interval(env.get("WATCHDOG_USEC", ""),
                                                    env.get("WATCHDOG_PID", ""))

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def send(self, *lines: str) -> None:
        """One datagram of `lines`, e.g. send("READY=1", "STATUS=3 jobs")."""
        if "READY=1" in lines:
            self._release_launcher()
        if self._sock is None:
            return
        try:
            self._sock.sendto("\n".join(lines).encode(), self._address)
        except OSError as e:
            # Said once, not at every watchdog ping: the loop pings several times a minute.
            error = e.strerror or str(e) or type(e).__name__
            if error != self._failing:
                self._failing = error
                log.warning("cannot notify systemd at %s: %s", self._address.replace("\0", "@"), error)
        else:
            if self._failing is not None:
                self._failing = None
                log.info("notifying systemd works again")

    def _release_launcher(self) -> None:
        if self._ready_fd is None:
            return
        try:
            os.write(self._ready_fd, b"\n")
        except OSError:
            pass  # the launcher is gone (interrupted): nobody to tell
        os.close(self._ready_fd)
        self._ready_fd = None

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._ready_fd is not None:
            os.close(self._ready_fd)
            self._ready_fd = None


def _address(value: str) -> str:
    """NOTIFY_SOCKET as a socket address: a path, or "@name" for Linux's abstract namespace."""
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    if value:
        log.warning("ignoring NOTIFY_SOCKET=%r: not an absolute path or @abstract name", value)
    return ""


def _watchdog_interval(usec: str, pid: str) -> float | None:
    """Seconds between WATCHDOG=1 pings, or None when systemd watches no one (or another pid).

    Half the interval systemd waits, as sd_watchdog_enabled(3) advises: WATCHDOG_USEC=30000000
    (WatchdogSec=30s) gives a ping every 15 s.
    """
    if not usec.isdigit() or not int(usec):
        return None
    if pid and pid != str(os.getpid()):
        return None  # meant for another process (a wrapper that exec'd us from a fork)
    return int(usec) / 2e6


def _fd(value: str) -> int | None:
    if not value.isdigit():
        return None
    fd = int(value)
    try:
        os.fstat(fd)
    except OSError:
        return None
    return fd


class Startup(enum.Enum):
    """How a detached daemon's start-up ended, as its launcher saw it."""

    READY = "ready"  # it said READY=1
    EXITED = "exited"  # it closed the pipe without saying so: it exited while starting
    SLOW = "slow"  # neither within the launcher's patience; it may still become ready


@dataclass(frozen=True)
class Launch:
    startup: Startup
    said: str  # what the daemon wrote to its standard error while the launcher listened


def await_ready(ready_fd: int, stderr_fd: int, timeout: float) -> Launch:
    """The launcher's side: read the daemon's stderr until it is ready, exits, or `timeout`."""
    said = bytearray()
    startup = Startup.SLOW
    deadline = clock.Deadline(timeout)
    with selectors.DefaultSelector() as selector:
        selector.register(ready_fd, selectors.EVENT_READ)
        selector.register(stderr_fd, selectors.EVENT_READ)
        # After the ready pipe closes, stderr is read to its end too: a daemon that exits
        # closes both, and its last words may still be in flight.
        while startup is not Startup.READY and selector.get_map() and \
                (left := deadline.left()) > 0:
            for key, _ in selector.select(left):
                data = os.read(key.fd, 65536)
                if key.fd == stderr_fd:
                    said += data
                    if not data:
                        selector.unregister(stderr_fd)
                else:
                    selector.unregister(ready_fd)
                    startup = Startup.READY if data else Startup.EXITED
    if startup is Startup.READY:
        said += _available(stderr_fd)
    return Launch(startup, said.decode(errors="replace"))


def _available(fd: int) -> bytes:
    """What can be read from `fd` now, without waiting."""
    data = bytearray()
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while selector.select(0) and (chunk := os.read(fd, 65536)):
            data += chunk
    return bytes(data)
