"""The Debian package: `make deb`'s build, its contents and maintainer scripts, lintian, and its
life in a throwaway root (overlay + chroot): install, check, daemon, upgrade keeping an edited
conffile, remove keeping the run log, purge; and a real takeover of a real cron there."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import ROOT, wait_until
from sysdeps import need
from throwaway_root import throwaway_root

BUILD = ROOT / "packaging" / "deb" / "build.py"
# Wheels shared between runs (the first build downloads them once); CRONSUP_WHEELS overrides.
WHEELS = Path(os.environ.get("CRONSUP_WHEELS") or Path(tempfile.gettempdir()) / "cronsup-test-wheels")
APT_CACHE = Path(tempfile.gettempdir()) / "cronsup-test-apt-archives"

pytestmark = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb is not installed")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    base = tmp_path_factory.mktemp("deb")
    done = subprocess.run([sys.executable, str(BUILD), "--out", str(base / "dist"),
                           "--stage", str(base / "stage"), "--wheels", str(WHEELS)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    deb = Path(done.stdout.strip().splitlines()[-1])
    return deb, base / "stage"


def info(deb: Path, *fields: str) -> str:
    return subprocess.run(["dpkg-deb", "-f", str(deb), *fields], capture_output=True, text=True,
                          check=True).stdout


def test_the_package_is_named_after_its_version_and_architecture(built):
    deb, _ = built
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True).stdout.strip()
    from cronsup import __version__

    assert deb.name == f"cronsup_{__version__}_{arch}.deb"
    assert info(deb, "Package").strip() == "cronsup"
    depends = info(deb, "Depends")
    assert "python3 (>= 3.11)" in depends and "libc6" in depends


def test_the_package_holds_the_program_units_man_pages_and_conffiles(built):
    deb, _ = built
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True).stdout
    files = {line.split()[-1].removeprefix(".") : line.split()[0] for line in listing.splitlines()}
    for path, mode in {"/usr/bin/cronsup": "-rwxr-xr-x", "/lib/systemd/system/cronsup.service": "-rw-r--r--",
                       "/usr/lib/systemd/user/cronsup.service": "-rw-r--r--",
                       "/etc/init.d/cronsup": "-rwxr-xr-x", "/etc/cronsup/jobs": "-rw-r--r--",
                       "/usr/share/man/man8/cronsup.8.gz": "-rw-r--r--",
                       "/usr/share/man/man5/cronsup-jobs.5.gz": "-rw-r--r--",
                       "/usr/share/doc/cronsup/copyright": "-rw-r--r--",
                       "/usr/lib/cronsup/lib/cronsup/cli_takeover.py": "-rw-r--r--"}.items():
        assert files.get(path) == mode, path
    assert all(" root/root " in line for line in listing.splitlines())
    # Compiled modules only from abi3 wheels, no .pyc (postinst compiles for the host's Python),
    # no console scripts of the build.
    assert [p for p in files if p.endswith(".so") and not p.endswith(".abi3.so")] == []
    assert [p for p in files if p.endswith(".pyc")] == [] and "/usr/lib/cronsup/lib/bin/" not in files
    conffiles = subprocess.run(["dpkg-deb", "-I", str(deb), "conffiles"], capture_output=True,
                               text=True, check=True).stdout.split()
    assert conffiles == ["/etc/cronsup/jobs", "/etc/init.d/cronsup"]


def test_nothing_in_the_package_names_the_build_stage_or_the_checkout(built):
    _, stage = built
    named = subprocess.run(["grep", "-rlF", "-e", str(stage), "-e", str(ROOT), str(stage)],
                           capture_output=True, text=True)
    assert named.stdout == ""
    launcher = (stage / "usr/bin/cronsup").read_text()
    assert launcher.startswith("#!/usr/bin/python3 -IS\n") and '"/usr/lib/cronsup/lib"' in launcher


def test_the_maintainer_scripts_start_nothing_and_purge_removes_the_run_log(built):
    _, stage = built
    postinst = (stage / "DEBIAN/postinst").read_text()
    code = "\n".join(ln for ln in postinst.splitlines() if not ln.lstrip().startswith("#"))
    assert "enable" not in code and not re.search(r"\bstart\b", code)  # try-restart: only if it runs
    assert "try-restart" in code
    postrm = (stage / "DEBIAN/postrm").read_text()
    purge = postrm.split("purge)")[1].split(";;")[0]
    assert "rm -rf /var/lib/cronsup" in purge and "/var/lib/cronsup" not in postrm.split("purge)")[0].split("remove)")[1]
    assert "cronsup release" in (stage / "DEBIAN/prerm").read_text()


def test_the_packaged_unit_runs_the_packaged_program(built):
    _, stage = built
    unit = (stage / "lib/systemd/system/cronsup.service").read_text()
    assert "ExecStart=/usr/bin/cronsup daemon --jobs /etc/cronsup/jobs --db /var/lib/cronsup/runs.db" in unit
    assert "Documentation=man:cronsup(8)" in unit
    assert "ExecStart=/usr/bin/cronsup daemon" in (stage / "usr/lib/systemd/user/cronsup.service").read_text()


def test_the_man_pages_have_every_command_and_the_jobs_file_format(built):
    _, stage = built
    import gzip

    page8 = gzip.decompress((stage / "usr/share/man/man8/cronsup.8.gz").read_bytes()).decode()
    for command in ("daemon", "check", "status", "logs", "takeover", "release", "import"):
        assert f".SS cronsup {command}\n" in page8
    page5 = gzip.decompress((stage / "usr/share/man/man5/cronsup-jobs.5.gz").read_bytes()).decode()
    assert "retry_backoff" in page5 and "@every" in page5
    if shutil.which("man"):
        for page in ("usr/share/man/man8/cronsup.8.gz", "usr/share/man/man5/cronsup-jobs.5.gz"):
            said = subprocess.run(["man", "--warnings", "-l", "-Tutf8", str(stage / page)],
                                  capture_output=True, text=True, env=dict(os.environ, MANWIDTH="80"))
            assert said.returncode == 0 and said.stderr == "", said.stderr


def test_lintian_finds_nothing_to_say(built):
    deb, _ = built
    lintian = need("lintian", "lintian")
    said = subprocess.run([lintian, "--display-info", "--pedantic", str(deb)], capture_output=True,
                          text=True, timeout=600)
    tags = [ln for ln in said.stdout.splitlines() if re.match(r"[EWIP]: ", ln)]
    assert tags == [] and said.returncode == 0, said.stdout + said.stderr


# -- in a throwaway root -------------------------------------------------------------------

@pytest.fixture
def chroot(tmp_path, built):
    (APT_CACHE / "partial").mkdir(parents=True, exist_ok=True)
    box = throwaway_root(tmp_path / "box", share=APT_CACHE)
    box.put("/root/cronsup.deb", built[0].read_bytes())
    yield box
    box.close()


def daemon_has_cron_flag(box) -> bool:
    return "--cron" in box.run("cronsup daemon --help").stdout


def test_the_package_installs_runs_upgrades_keeping_an_edited_conffile_and_purges(chroot):
    box = chroot
    box.run("dpkg -i /root/cronsup.deb")
    assert box.run("cronsup --version").stdout.strip().startswith("cronsup, version")
    assert box.run("cronsup check /etc/cronsup/jobs").returncode == 0
    assert box.run("stat -c %a /var/lib/cronsup").stdout.strip() == "700"
    assert "enabled" not in box.run("ls /etc/rc2.d").stdout.replace("cronsup", "")  # nothing registered
    assert box.run("ls /etc/rc2.d | grep -c cronsup", check=False).stdout.strip() == "0"

    # The daemon, for a few seconds: a job every second runs; SIGTERM stops it cleanly.
    flag = "--cron " if daemon_has_cron_flag(box) else ""
    box.run("printf '@every 1s echo tick >> /root/ticks\\n' >> /etc/cronsup/jobs")
    daemon = subprocess.Popen(
        ["nsenter", f"--target={box.holder.pid}", "--mount", "chroot", str(box.merged),
         "/usr/bin/cronsup", "daemon", *flag.split(), "--jobs", "/etc/cronsup/jobs",
         "--db", "/var/lib/cronsup/runs.db"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until(lambda: box.path("/root/ticks").exists() and
                   box.path("/root/ticks").read_text().count("tick") >= 2, timeout=30, what="two ticks")
        status = box.run("cronsup status")
        assert re.search(r"^\s*echo\b", status.stdout, re.M), status.stdout
    finally:
        daemon.terminate()
        out = daemon.communicate(timeout=60)[0]
    assert daemon.returncode == 0, out
    assert "cronsup check" not in out and "Traceback" not in out
    logs = box.run("cronsup logs -n 2")
    assert [ln.split()[1] for ln in logs.stdout.splitlines()[1:]] == ["echo", "echo"]
    assert logs.stdout.count(" success ") == 2, logs.stdout

    # Upgrade over itself: the edited conffile stays, with no question asked.
    edited = box.run("cat /etc/cronsup/jobs").stdout
    box.run("dpkg -i /root/cronsup.deb < /dev/null")
    assert box.run("cat /etc/cronsup/jobs").stdout == edited

    # Remove keeps the run log and the conffile; purge takes both, and leaves nothing behind.
    box.run("dpkg -r cronsup")
    assert box.run("test -e /usr/bin/cronsup", check=False).returncode != 0
    assert box.run("test -f /var/lib/cronsup/runs.db").returncode == 0
    assert box.run("test -f /etc/cronsup/jobs").returncode == 0
    purged = box.run("dpkg -P cronsup 2>&1")
    assert "not empty" not in purged.stdout, purged.stdout
    for gone in ("/var/lib/cronsup", "/etc/cronsup", "/usr/lib/cronsup", "/etc/init.d/cronsup"):
        assert box.run(f"test -e {gone}", check=False).returncode != 0, gone


def _install_cron(box) -> None:
    """Debian's real cron in the throwaway root, its .debs cached between runs."""
    opts = f"-o Dir::Cache::Archives={APT_CACHE}/"  # the host's directory, shared in
    done = box.run(f"apt-get install -y -qq --no-install-recommends {opts} cron", check=False, timeout=600)
    if done.returncode != 0:
        box.run(f"apt-get update -qq {opts}", check=False, timeout=600)
        done = box.run(f"apt-get install -y -qq --no-install-recommends {opts} cron", check=False, timeout=600)
    if done.returncode != 0:
        pytest.skip(f"cannot install Debian's cron in the throwaway root: {done.stderr.strip()[-300:]}")


def test_a_real_takeover_and_release_of_debians_cron_without_systemd(chroot):
    box = chroot
    _install_cron(box)
    box.run("dpkg -i /root/cronsup.deb")
    if not daemon_has_cron_flag(box):
        # Until `daemon --cron` is merged (another branch), the init script runs without it.
        box.run("sed -i 's/DAEMON_ARGS=\"--cron /DAEMON_ARGS=\"/' /etc/init.d/cronsup")
    box.run("printf 'SHELL=/bin/sh\\n*/5 * * * * root true\\n' > /etc/cron.d/every5 && chmod 644 /etc/cron.d/every5")
    box.run("service cron start")
    cron_pid = box.run("cat /run/crond.pid").stdout.strip()
    assert box.run(f"kill -0 {cron_pid}").returncode == 0
    assert box.run("ls /etc/rc2.d").stdout.count("S01cron") == 1

    dry = box.run("cronsup takeover --dry-run")
    assert "ok       /etc/cron.d/every5" in dry.stdout
    assert "would run: service cron stop" in dry.stdout and "would run: update-rc.d cron disable" in dry.stdout
    assert box.run(f"kill -0 {cron_pid}").returncode == 0  # still cron's server

    took = box.run("cronsup takeover")
    assert "ran: service cron stop" in took.stdout and "ran: service cronsup start" in took.stdout
    assert box.run(f"kill -0 {cron_pid} 2>/dev/null", check=False).returncode != 0
    rc2 = box.run("ls /etc/rc2.d").stdout
    assert "K01cron" in rc2 and "S01cronsup" in rc2
    assert box.run("cronsup status").returncode == 0  # the daemon answers
    again = box.run("cronsup takeover")
    assert "nothing to change" in again.stdout

    released = box.run("cronsup release")
    assert "cron is back as it was: enabled, running" in released.stdout
    rc2 = box.run("ls /etc/rc2.d").stdout
    assert "S01cron" in rc2 and "cronsup" not in rc2
    assert box.run("service cron status").returncode == 0
    assert box.run("service cronsup status", check=False).returncode != 0
    assert "nothing to release" in box.run("cronsup release").stdout

    # Removing the package while it has taken over gives the server back to cron.
    box.run("cronsup takeover")
    assert box.run("service cron status", check=False).returncode != 0
    box.run("dpkg -r cronsup")
    assert box.run("service cron status").returncode == 0 and "S01cron" in box.run("ls /etc/rc2.d").stdout
    box.run("service cron stop")
