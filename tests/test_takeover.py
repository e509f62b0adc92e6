"""`cronsup takeover` and `release` against a fake systemctl (systemd cannot run as PID 1
here) on a --cron-root tree of real files: the checks, the calls, the record, idempotence."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, nobody_cannot_run_cronsup, wait_until

FAKE = Path(__file__).with_name("fake_systemctl.py")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="cron's files must be root's")
pytestmark = needs_root

CHANGING = ("stop", "start", "restart", "enable", "disable", "mask", "unmask", "daemon-reload")


class Host:
    """A --cron-root tree, a fake systemctl on PATH and its state."""

    def __init__(self, tmp_path: Path, cron=("enabled", True), cronsup=("disabled", False)):
        self.root = tmp_path / "root"
        for d in ("etc/cron.d", "run/systemd/system", "lib/systemd/system", "var/lib"):
            (self.root / d).mkdir(parents=True)
        self.write("etc/crontab", "SHELL=/bin/sh\n17 * * * * root cd / && run-parts --report /etc/cron.hourly\n")
        self.write("etc/cron.d/e2scrub_all",
                   "30 3 * * 0 root test -e /run/systemd/system || /sbin/e2scrub_all -A\n")
        unit = (ROOT / "systemd" / "cronsup.service").read_text()
        (self.root / "lib/systemd/system/cronsup.service").write_text(
            unit.replace("/usr/local/bin/cronsup", "/usr/bin/cronsup"))
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        (bin_dir / "systemctl").write_text(f"#!/bin/sh\nexec {sys.executable} {FAKE} \"$@\"\n")
        (bin_dir / "systemctl").chmod(0o755)
        self.state = tmp_path / "systemctl.json"
        units = {}
        if cron is not None:
            units["cron.service"] = {"enabled": cron[0], "active": cron[1]}
        units["cronsup.service"] = {"enabled": cronsup[0], "active": cronsup[1]}
        self.state.write_text(json.dumps({"units": units, "fail": []}))
        self.env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}",
                        FAKE_SYSTEMCTL_STATE=str(self.state))

    def write(self, relative: str, text: str, mode: int = 0o644) -> Path:
        path = self.root / relative
        path.write_text(text)
        path.chmod(mode)
        return path

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "cronsup", *args, "--cron-root", str(self.root)],
                              capture_output=True, text=True, env=self.env, timeout=60)

    def units(self) -> dict:
        return {u: (s["enabled"], s["active"]) for u, s in json.loads(self.state.read_text())["units"].items()}

    def changing_calls(self) -> list[str]:
        calls = Path(str(self.state) + ".calls")
        lines = calls.read_text().splitlines() if calls.exists() else []
        return [c for c in lines if c.split()[0] in CHANGING]

    def fail(self, call: str) -> None:
        data = json.loads(self.state.read_text())
        data["fail"].append(call)
        self.state.write_text(json.dumps(data))

    @property
    def drop_in(self) -> Path:
        return self.root / "etc/systemd/system/cronsup.service.d/takeover.conf"

    @property
    def record(self) -> Path:
        return self.root / "var/lib/cronsup/takeover.json"


@pytest.fixture
def host(tmp_path):
    return Host(tmp_path)


def test_dry_run_lists_every_step_and_changes_nothing(host):
    done = host.run("takeover", "--dry-run")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "ok       /etc/crontab" in out and "/etc/cron.d/e2scrub_all" in out
    for step in ("would run: systemctl stop cron.service", "would run: systemctl disable --quiet cron.service",
                 "would run: systemctl mask --quiet cron.service", "would run: systemctl daemon-reload",
                 "would run: systemctl enable --quiet cronsup.service",
                 "would run: systemctl start cronsup.service"):
        assert step in out
    assert "dry run: nothing was changed" in out
    assert host.changing_calls() == []
    assert host.units() == {"cron.service": ("enabled", True), "cronsup.service": ("disabled", False)}
    assert not host.drop_in.exists() and not host.record.exists()


def test_takeover_masks_cron_and_starts_cronsup_with_the_cron_flag(host):
    done = host.run("takeover")
    assert done.returncode == 0, done.stderr
    assert host.units() == {"cron.service": ("masked", False), "cronsup.service": ("enabled", True)}
    assert host.changing_calls() == [
        "stop cron.service", "disable --quiet cron.service", "mask --quiet cron.service",
        "daemon-reload", "enable --quiet cronsup.service", "start cronsup.service"]
    exec_start = [ln for ln in host.drop_in.read_text().splitlines() if ln.startswith("ExecStart=")]
    assert exec_start == ["ExecStart=", "ExecStart=/usr/bin/cronsup daemon --cron --jobs /etc/cronsup/jobs "
                                         "--db /var/lib/cronsup/runs.db"]
    recorded = json.loads(host.record.read_text())
    assert recorded["cron"] == {"enabled": "enabled", "active": True}
    assert recorded["cronsup"] == {"enabled": "disabled", "active": False}


def test_a_second_takeover_changes_nothing_and_keeps_the_first_record(host):
    assert host.run("takeover").returncode == 0
    first = host.record.read_text()
    calls = len(host.changing_calls())
    again = host.run("takeover")
    assert again.returncode == 0, again.stderr
    assert "took over cron on" in again.stdout and "nothing to change" in again.stdout
    assert len(host.changing_calls()) == calls  # not even a restart: cronsup's jobs go on
    assert host.record.read_text() == first


@pytest.mark.parametrize("cron", [("enabled", True), ("disabled", False), ("masked", False),
                                  ("enabled", False), ("disabled", True)],
                         ids=lambda c: f"{c[0]}-{'running' if c[1] else 'stopped'}")
def test_release_puts_cron_back_exactly_as_it_was(tmp_path, cron):
    host = Host(tmp_path, cron=cron)
    assert host.run("takeover").returncode == 0
    assert host.units()["cron.service"] == ("masked", False)
    done = host.run("release")
    assert done.returncode == 0, done.stderr
    assert host.units() == {"cron.service": cron, "cronsup.service": ("disabled", False)}
    assert not host.drop_in.exists() and not host.record.exists()
    assert "cron is back as it was" in done.stdout


def test_release_keeps_a_cronsup_that_ran_before_takeover_running_without_the_cron_flag(tmp_path):
    host = Host(tmp_path, cronsup=("enabled", True))
    assert host.run("takeover").returncode == 0
    assert "restart cronsup.service" in host.changing_calls()  # it had to get --cron
    assert host.run("release").returncode == 0
    assert host.units() == {"cron.service": ("enabled", True), "cronsup.service": ("enabled", True)}
    assert not host.drop_in.exists()


def test_release_twice_says_there_is_nothing_to_release(host):
    assert host.run("takeover").returncode == 0
    assert host.run("release").returncode == 0
    calls = len(host.changing_calls())
    again = host.run("release")
    assert again.returncode == 0
    assert "nothing to release" in again.stdout
    assert len(host.changing_calls()) == calls


def test_takeover_without_cron_installed_only_enables_cronsup(tmp_path):
    host = Host(tmp_path, cron=None)
    assert host.run("takeover").returncode == 0
    assert [c for c in host.changing_calls() if "cron.service" in c] == []
    assert host.run("release").returncode == 0
    assert host.units() == {"cronsup.service": ("disabled", False)}


def test_takeover_refuses_with_the_reasons_while_a_file_would_be_skipped(host):
    host.write("etc/cron.d/loose", "* * * * * root true\n", mode=0o664)
    host.write("etc/cron.d/broken", "* * * * root true\n61 * * * * root true\n")
    host.write("etc/cron.d/sysstat.dpkg-old", "garbage\n")  # cron ignores it: no refusal for it
    done = host.run("takeover")
    assert done.returncode == 1
    assert "takeover refused: 2 files would be skipped" in done.stderr
    lines = {ln.split()[1]: ln for ln in done.stdout.splitlines() if ln.startswith("  ") and len(ln.split()) > 1}
    assert lines["/etc/cron.d/loose"].split()[0] == "skipped" and "chmod go-w" in lines["/etc/cron.d/loose"]
    assert lines["/etc/cron.d/broken"].split()[0] == "skipped" and "/etc/cron.d/broken:" in lines["/etc/cron.d/broken"]
    assert lines["/etc/cron.d/sysstat.dpkg-old"].split()[0] == "ignored"
    assert lines["/etc/crontab"].split()[0] == "ok"
    assert host.changing_calls() == [] and not host.record.exists()
    assert host.units()["cron.service"] == ("enabled", True)


def test_a_user_crontab_its_user_does_not_own_is_refused(host):
    spool = host.root / "var/spool/cron/crontabs"
    spool.mkdir(parents=True)
    host.write("var/spool/cron/crontabs/nobody", "* * * * * id\n", mode=0o600)  # root's file
    host.write("var/spool/cron/crontabs/root", "@hourly true\n", mode=0o600)
    done = host.run("takeover", "--dry-run")
    assert done.returncode == 1
    line = next(ln for ln in done.stdout.splitlines() if "crontabs/nobody" in ln)
    assert "skipped" in line and "not by nobody" in line
    assert next(ln for ln in done.stdout.splitlines() if "crontabs/root" in ln).split()[0] == "ok"


def test_a_broken_cronsup_jobs_file_refuses_takeover_too(host):
    (host.root / "etc/cronsup").mkdir()
    host.write("etc/cronsup/jobs", "[job.x]\ntimeout = \"soon\"\n* * * * * true\n")
    done = host.run("takeover", "--dry-run")
    assert done.returncode == 1
    assert "/etc/cronsup/jobs" in done.stdout and "refused" in done.stderr


def test_takeover_lists_crons_running_jobs_and_leaves_them_running(host):
    # A stand-in cron daemon with one job under it (a shell, as cron forks one per job).
    cron = subprocess.Popen(["/bin/sh", "-c", "sleep 120 & wait"], start_new_session=True)
    try:
        import psutil

        wait_until(lambda: psutil.Process(cron.pid).children(), what="the job under the fake cron")
        (host.root / "run").mkdir(exist_ok=True)
        (host.root / "run/crond.pid").write_text(f"{cron.pid}\n")
        done = host.run("takeover")
        assert done.returncode == 0, done.stderr
        assert "cron's jobs still running" in done.stdout
        job = psutil.Process(cron.pid).children()[0]
        assert any(ln.split()[0] == str(job.pid) and "sleep 120" in ln for ln in done.stdout.splitlines()
                   if ln.strip() and ln.split()[0].isdigit())
        assert job.is_running()  # not killed
    finally:
        os.killpg(cron.pid, 9)
        cron.wait()


def test_a_failed_cronsup_start_puts_cron_back(host):
    host.fail("start cronsup.service")
    done = host.run("takeover")
    assert done.returncode == 1
    assert "takeover failed" in done.stderr and "the test said so" in done.stderr
    assert "put cron back as it was" in done.stdout
    assert host.units() == {"cron.service": ("enabled", True), "cronsup.service": ("disabled", False)}
    assert not host.record.exists() and not host.drop_in.exists()


def test_a_systemd_that_does_not_answer_stops_takeover_before_anything_changes(host):
    host.fail("is-enabled cron.service")  # as "Failed to connect to bus" would
    done = host.run("takeover")
    assert done.returncode == 1
    assert "cannot ask systemd about cron.service" in done.stderr and "the test said so" in done.stderr
    assert host.changing_calls() == [] and not host.record.exists()


def test_takeover_without_an_installed_unit_says_how_to_get_it(host):
    (host.root / "lib/systemd/system/cronsup.service").unlink()
    done = host.run("takeover")
    assert done.returncode == 1
    assert "cronsup.service is not installed" in done.stderr
    assert host.units()["cron.service"] == ("enabled", True)  # rolled back


def test_takeover_as_a_plain_user_is_refused_without_a_cron_root():
    if why := nobody_cannot_run_cronsup():
        pytest.skip(why)
    done = subprocess.run(["setpriv", "--reuid", "nobody", "--regid", "nogroup", "--clear-groups",
                           sys.executable, "-m", "cronsup", "takeover", "--dry-run"],
                          capture_output=True, text=True, timeout=60, cwd="/")
    assert done.returncode == 1 and "run them as root" in done.stderr
