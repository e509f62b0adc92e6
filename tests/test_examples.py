"""The examples: valid, complete as a tour, and (examples/jobs) harmless and runnable anywhere."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import ROOT
from cronsup import importer, jobsfile, options
from cronsup.model import JobsFile
from cronsup.schedule import KEYWORDS

EXAMPLES = ROOT / "examples"
TOUR = EXAMPLES / "jobs"
DEBIAN_CRONTAB = ROOT / "tests" / "data" / "debian" / "system" / "crontab--cron-daemon-common"


def load(path: Path) -> JobsFile:
    return jobsfile.load(str(path))


@pytest.mark.parametrize("example", sorted(EXAMPLES.iterdir()), ids=lambda p: p.name)
def test_every_example_passes_check(example):
    assert load(example).jobs


def test_every_job_in_the_tour_has_a_description():
    assert [j.name for j in load(TOUR).jobs if not j.description] == []


def test_the_tour_sets_every_option_and_shows_user_commented_out():
    text = TOUR.read_text()
    set_here = set(re.findall(r"^([a-z_]+) *=", text, re.M))
    # user is shown, but commented out: switching users needs a root daemon, and `make run`
    # must work for anyone.
    assert set_here == set(options.SPECS) - {"user"}
    assert re.search(r"^# *user *= *\"", text, re.M)
    assert all(job.user is None for job in load(TOUR).jobs)


def test_the_tour_shows_every_kind_of_schedule_line():
    jobs = load(TOUR).jobs
    texts = [j.schedule.text for j in jobs]
    assert {t.split()[0] for t in texts if t.startswith("@")} == set(KEYWORDS)
    fields = [t.split() for t in texts if not t.startswith("@")]
    assert any("/" in f[0] for f in fields)  # steps
    assert any("," in f[0] and "-" in f[1] for f in fields)  # lists and ranges
    assert any(re.search("[a-z]{3}", f[4]) for f in fields)  # day names
    assert any(re.search("[a-z]{3}", f[3]) for f in fields)  # month names
    assert any(f[4] == "7" for f in fields)  # Sunday as 7
    assert any(f[2] != "*" and f[4] != "*" for f in fields)  # day-of-month OR day-of-week
    assert any(j.stdin for j in jobs)  # % starts standard input
    assert any("%" in j.command for j in jobs)  # \% is a literal percent sign
    text = TOUR.read_text()
    for name in ("SHELL", "PATH", "MAILTO", "CRON_TZ"):
        assert re.search(rf"^{name}=", text, re.M), name
    assert re.search(r"^\[defaults\]$", text, re.M)


def test_the_migrated_crontab_runs_what_the_debian_crontab_ran():
    # The hand-made changes add options and names; schedules, commands and users stay.
    imported = jobsfile.parse(importer.convert([(str(DEBIAN_CRONTAB), DEBIAN_CRONTAB.read_text())],
                                               system=True)).jobs
    migrated = load(EXAMPLES / "migrated-crontab.jobs").jobs
    assert [(j.schedule.text, j.command, j.user) for j in migrated] == \
           [(j.schedule.text, j.command, j.user) for j in imported]
    assert all(j.timeout and j.description for j in migrated)


def test_the_backup_chain_is_a_chain():
    jobs = {j.name: j for j in load(EXAMPLES / "backup-chain.jobs").jobs}
    assert jobs["backup"].after == ("db-dump",) and jobs["verify"].after == ("backup",)
    assert jobs["report"].after == ("verify",) and jobs["report"].mailto
    assert jobs["db-dump"].retries and jobs["db-dump"].retry_backoff > 1


# Slow by design (a 25 s sleep) or failing by design (two times in three).
NOT_RUN = {"slow-tick", "flaky"}


def test_every_job_of_the_tour_runs_and_succeeds(daemon, tmp_path):
    """What `make run` runs must work on any machine: each job, started by hand, succeeds."""
    out = tmp_path / "example-out"
    # Its files go to this test's temp dir instead of /tmp/cronsup-example.
    text = TOUR.read_text().replace("EXAMPLE = /tmp/cronsup-example", f"EXAMPLE = {out}")
    assert str(out) in text
    daemon.write(text)
    daemon.start()
    names = [j.name for j in load(TOUR).jobs if j.name not in NOT_RUN and j.enabled]
    names.remove("report")  # @after: started below, after the job it follows
    with ThreadPoolExecutor(4) as pool:
        results = dict(zip(names, pool.map(lambda n: daemon.cli("run", n, "--wait", timeout=60), names)))
    results["report"] = daemon.cli("run", "report", "--wait", timeout=60)
    failed = {n: r.stdout + r.stderr for n, r in results.items() if r.returncode != 0}
    assert failed == {}
    assert (out / "heartbeat").exists() and (out / "note").read_text() == "Dear admin,\ncronsup was here.\n"
    assert daemon.stop() == 0
