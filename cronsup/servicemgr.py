"""The init system behind `takeover`/`release`: systemd through systemctl, or sysvinit through
service and update-rc.d, each found on PATH (tests put fakes there)."""

from __future__ import annotations

import glob
import os
import subprocess
from dataclasses import dataclass


class ServiceError(Exception):
    """A service manager command failed; the message names the command and what it said."""


@dataclass(frozen=True)
class UnitState:
    # systemd's words: enabled, disabled, masked, static, not-found (sysv: the same but masked)
    enabled: str
    active: bool

    def as_dict(self) -> dict:
        return {"enabled": self.enabled, "active": self.active}


class ServiceManager:
    """What takeover needs of an init system; `done` lists every changing command run."""

    name = "?"

    def __init__(self, root: str = "/", dry_run: bool = False):
        self.root = root
        self.dry_run = dry_run  # changing commands are listed in `done`, not run
        self.done: list[str] = []

    def state(self, service: str) -> UnitState:
        raise NotImplementedError

    def stop(self, service: str) -> None: raise NotImplementedError
    def start(self, service: str) -> None: raise NotImplementedError
    def restart(self, service: str) -> None: raise NotImplementedError
    def enable(self, service: str) -> None: raise NotImplementedError
    def disable(self, service: str) -> None: raise NotImplementedError
    def mask(self, service: str) -> None: raise NotImplementedError
    def unmask(self, service: str) -> None: raise NotImplementedError
    def forget(self, service: str) -> None: raise NotImplementedError
    def reload_config(self) -> None: raise NotImplementedError

    def _run(self, *args: str, changes: bool = True) -> subprocess.CompletedProcess:
        if changes and self.dry_run:
            self.done.append(" ".join(args))
            return subprocess.CompletedProcess(list(args), 0, "", "")
        try:
            done = subprocess.run(list(args), capture_output=True, text=True, timeout=120,
                                  stdin=subprocess.DEVNULL)
        except FileNotFoundError:
            raise ServiceError(f"{args[0]} is not installed (not found on PATH)") from None
        except subprocess.TimeoutExpired:
            raise ServiceError(f"`{' '.join(args)}` did not finish within 120 s") from None
        if changes:
            if done.returncode != 0:
                said = (done.stderr or done.stdout).strip() or f"exit status {done.returncode}"
                raise ServiceError(f"`{' '.join(args)}` failed: {said}")
            self.done.append(" ".join(args))
        return done


class Systemd(ServiceManager):
    name = "systemd"

    def unit(self, service: str) -> str:
        return service if "." in service else service + ".service"

    def state(self, service: str) -> UnitState:
        unit = self.unit(service)
        said = self._run("systemctl", "is-enabled", unit, changes=False)
        word = said.stdout.strip().splitlines()[-1] if said.stdout.strip() else ""
        if not word:
            # An unknown unit: "Failed to get unit file state ... No such file". Anything else
            # (no bus, no systemd) must not pass for "cron is not installed".
            if "No such file" not in said.stderr and "not found" not in said.stderr:
                raise ServiceError(f"cannot ask systemd about {unit}: `systemctl is-enabled {unit}` "
                                   f"said {said.stderr.strip() or 'nothing'}")
            word = "not-found"
        active = self._run("systemctl", "is-active", unit, changes=False)
        if not active.stdout.strip() and active.returncode != 0:
            raise ServiceError(f"cannot ask systemd about {unit}: `systemctl is-active {unit}` "
                               f"said {active.stderr.strip() or 'nothing'}")
        return UnitState(word, active.returncode == 0)

    def stop(self, service): self._run("systemctl", "stop", self.unit(service))
    def start(self, service): self._run("systemctl", "start", self.unit(service))
    def restart(self, service): self._run("systemctl", "restart", self.unit(service))
    def enable(self, service): self._run("systemctl", "enable", "--quiet", self.unit(service))
    def disable(self, service): self._run("systemctl", "disable", "--quiet", self.unit(service))
    def mask(self, service): self._run("systemctl", "mask", "--quiet", self.unit(service))
    def unmask(self, service): self._run("systemctl", "unmask", "--quiet", self.unit(service))
    def forget(self, service): self.disable(service)
    def reload_config(self): self._run("systemctl", "daemon-reload")


class SysV(ServiceManager):
    """/etc/init.d scripts: enabled means start links in a multi-user runlevel (rc2.d-rc5.d)."""

    name = "sysvinit"

    def _links(self, service: str, kind: str) -> list[str]:
        return glob.glob(os.path.join(self.root, "etc", "rc[2345].d", f"{kind}[0-9][0-9]{service}"))

    def state(self, service: str) -> UnitState:
        if not os.path.exists(os.path.join(self.root, "etc", "init.d", service)):
            return UnitState("not-found", False)
        if self._links(service, "S"):
            enabled = "enabled"
        elif self._links(service, "K"):
            enabled = "disabled"
        else:
            enabled = "unregistered"  # no rc links at all: `update-rc.d NAME remove` state
        active = self._run("service", service, "status", changes=False).returncode == 0
        return UnitState(enabled, active)

    def stop(self, service): self._run("service", service, "stop")
    def start(self, service): self._run("service", service, "start")
    def restart(self, service): self._run("service", service, "restart")

    def enable(self, service):
        if self.state(service).enabled == "unregistered":
            self._run("update-rc.d", service, "defaults")
        self._run("update-rc.d", service, "enable")

    def disable(self, service):
        if self.state(service).enabled == "unregistered":
            self._run("update-rc.d", service, "defaults")
        self._run("update-rc.d", service, "disable")

    def mask(self, service):  # sysvinit has no mask; disabled links are what it keeps
        pass

    def unmask(self, service):
        pass

    def forget(self, service): self._run("update-rc.d", "-f", service, "remove")

    def reload_config(self):
        pass


def detect(root: str = "/", dry_run: bool = False) -> ServiceManager:
    """systemd when it runs as init (the test sd_booted() makes), else sysvinit."""
    if os.path.isdir(os.path.join(root, "run", "systemd", "system")):
        return Systemd(root, dry_run)
    return SysV(root, dry_run)
