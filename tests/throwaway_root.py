"""A throwaway root for package tests: an overlayfs over the host's / (writes go to an upper
directory under tmp_path), mounted in a private mount namespace, entered with chroot.

The namespace is held by one process; every command enters it with nsenter. Nothing is mounted
in the host's namespace, and whatever the tests install or start stays in the overlay:
dpkg's database, /etc, services started there (killed at the end). A fresh tmpfs /run hides
the host's runtime state, and a policy-rc.d keeps invoke-rc.d from starting services that
packages installed in there ask for."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

SETUP = """
set -e
mount -t overlay overlay -o "lowerdir=/,upperdir=$1/upper,workdir=$1/work" "$1/merged"
mount -t proc proc "$1/merged/proc"
mount --rbind /dev "$1/merged/dev"
mount -t tmpfs -o mode=0755 tmpfs "$1/merged/run"
mkdir -p "$1/merged/run/lock"
if [ -n "$2" ]; then mkdir -p "$1/merged$2" && mount --bind "$2" "$1/merged$2"; fi
echo ready
exec sleep 100000
"""


class ThrowawayRoot:
    def __init__(self, base: Path, share: Path | None = None):
        """`share`: a host directory seen, and written, at the same path inside."""
        self.base = base
        for d in ("upper", "work", "merged"):
            (base / d).mkdir(parents=True)
        self.merged = base / "merged"
        policy = base / "upper" / "usr" / "sbin" / "policy-rc.d"
        policy.parent.mkdir(parents=True)
        policy.write_text("#!/bin/sh\n# tests: no service starts by itself in the throwaway root\nexit 101\n")
        policy.chmod(0o755)
        self.holder = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", SETUP, "sh", str(base), str(share or "")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        line = self.holder.stdout.readline()
        if line.strip() != "ready":
            self.holder.wait(timeout=30)
            raise OSError(f"cannot mount the overlay: {self.holder.stderr.read().strip()}")

    def run(self, script: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        """`script` in sh, as root in the throwaway root."""
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "LANG": "C.UTF-8", "HOME": "/root", "DEBIAN_FRONTEND": "noninteractive"}
        done = subprocess.run(
            ["nsenter", f"--target={self.holder.pid}", "--mount", "chroot", str(self.merged),
             "/bin/sh", "-c", script], capture_output=True, text=True, timeout=timeout, env=env, cwd="/")
        if check and done.returncode != 0:
            raise AssertionError(f"in the throwaway root, `{script}` exited {done.returncode}:\n"
                                 f"{done.stdout}\n{done.stderr}")
        return done

    def path(self, inside: str) -> Path:
        """A file of the throwaway root as the host sees its upper layer (written files only)."""
        return self.base / "upper" / inside.lstrip("/")

    def put(self, inside: str, data: bytes) -> None:
        target = self.path(inside)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)

    def close(self) -> None:
        # Whatever runs in there (a daemon a test started) goes with it.
        root = str(self.merged)
        for pid in os.listdir("/proc"):
            if pid.isdigit() and int(pid) != self.holder.pid:
                try:
                    if os.readlink(f"/proc/{pid}/root") == root:
                        os.kill(int(pid), signal.SIGKILL)
                except OSError:
                    continue
        os.killpg(self.holder.pid, signal.SIGKILL)
        self.holder.wait(timeout=30)


def throwaway_root(base: Path, share: Path | None = None) -> ThrowawayRoot:
    """A ThrowawayRoot, or a skip saying exactly why there cannot be one here."""
    if os.geteuid() != 0:
        pytest.skip("an overlay root needs root")
    for tool in ("unshare", "nsenter", "chroot"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    try:
        return ThrowawayRoot(base, share)
    except OSError as e:
        pytest.skip(str(e))
