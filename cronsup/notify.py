"""systemd's sd_notify protocol: READY=1, STATUS=..., WATCHDOG=1, STOPPING=1."""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger("cronsup")


class Notifier:
    """Sends to $NOTIFY_SOCKET when systemd set it (Type=notify); otherwise does nothing."""

    def __init__(self, environ: dict[str, str] | None = None):
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self._sock: socket.socket | None = None
        self._address = "\0" + address[1:] if address.startswith("@") else address
        if address:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        watchdog = usec.isdigit() and (not pid or pid == str(os.getpid()))
        # Ping at half the interval systemd waits, as sd_watchdog_enabled(3) advises.
        self.watchdog_interval: float | None = int(usec) / 2e6 if watchdog and int(usec) else None

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def send(self, *lines: str) -> None:
        if self._sock is None:
            return
        try:
            self._sock.sendto("\n".join(lines).encode(), self._address)
        except OSError as e:
            log.warning("cannot notify systemd at %s: %s", self._address, e.strerror)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
