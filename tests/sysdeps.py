"""Debian packages the tests need (PostgreSQL, Chromium, promtool...), installed when missing.

CI runs in a fresh machine of this kind: the test setup installs what it needs with apt-get
(as root, once per package, under a lock so parallel tests do not race dpkg), and a test
skips, saying why, only where the package truly cannot be had.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

_LOCK = Path(tempfile.gettempdir()) / "cronsup-tests-apt.lock"
_updated = False


def _installed(binaries: tuple[str, ...]) -> str | None:
    for binary in binaries:
        found = binary if os.path.isabs(binary) and os.access(binary, os.X_OK) else shutil.which(binary)
        if found:
            return found
    return None


def need(package: str, *binaries: str) -> str:
    """The path of the first of `binaries` found, installing Debian's `package` if none is.

    Skips the calling test, with the reason, where it cannot be installed."""
    found = _installed(binaries)
    if found:
        return found
    why = _install(package)
    found = _installed(binaries)
    if found:
        return found
    pytest.skip(f"needs {' or '.join(binaries)} from Debian's {package} package: {why}")


def _install(package: str) -> str:
    global _updated
    if shutil.which("apt-get") is None:
        return "no apt-get on this machine"
    if os.geteuid() != 0:
        return "not root, so it cannot be installed here"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    with open(_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        steps = [] if _updated else [["apt-get", "update", "-qq"]]
        steps.append(["apt-get", "install", "-y", "-qq", "--no-install-recommends", package])
        for step in steps:
            done = subprocess.run(step, env=env, capture_output=True, text=True, timeout=900)
            if done.returncode != 0:
                tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
                return f"{' '.join(step)} failed: {' / '.join(tail)}"
        _updated = True
    return "installed, but the binary is still missing"
