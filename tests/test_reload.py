"""Hot reload with real edits of the jobs file, as editors make them."""

import os
import signal

import pytest

from conftest import wait_until

BASE = """\
    [job.steady]
    @every 1s echo steady
    """


def config_error(daemon):
    return daemon.status()["daemon"]["config_error"]


def names(daemon):
    return [j["name"] for j in daemon.status()["jobs"]]


def test_a_file_saved_by_rename_is_reloaded(daemon):
    daemon.write(BASE)
    daemon.start()
    new = daemon.tmp / ".jobs.swp"
    new.write_text("[job.steady]\n@every 1s echo steady\n[job.added]\n@every 1s echo added\n")
    os.rename(new, daemon.jobs)
    daemon.finished("added")
    assert names(daemon) == ["steady", "added"]


def test_a_file_written_in_place_is_reloaded(daemon):
    daemon.write(BASE)
    daemon.start()
    with open(daemon.jobs, "r+") as f:
        f.truncate(0)
        f.write("[job.other]\n@every 1s echo other\n")
    daemon.finished("other")
    wait_until(lambda: names(daemon) == ["other"], what="the old job to be gone")


def test_a_deleted_file_keeps_the_last_good_jobs_running_until_it_comes_back(daemon):
    daemon.write(BASE)
    daemon.start()
    daemon.finished("steady")
    os.unlink(daemon.jobs)
    error = wait_until(lambda: config_error(daemon), what="the config error")
    assert "cannot read" in error and str(daemon.jobs) in error
    before = len(daemon.finished("steady"))
    daemon.finished("steady", before + 2)  # still running on the last good version
    daemon.write(BASE + "[job.back]\n@every 1s true\n")
    daemon.finished("back")
    assert config_error(daemon) is None


def test_a_syntax_error_mid_edit_is_shown_and_the_old_version_keeps_running(daemon):
    daemon.write(BASE)
    daemon.start()
    daemon.write("[job.steady]\n@every 1s echo steady\n[job.half]\ntimeout = \"1h\n")
    error = wait_until(lambda: config_error(daemon), what="the config error")
    assert error.startswith(f"{daemon.jobs}:3: the block [job.half] has no schedule line")
    assert error.endswith("(and 1 more error)")
    result = daemon.cli("status")
    assert result.returncode == 1  # scripts see the broken file though the daemon runs
    assert "JOBS FILE ERROR (running the last good version)" in result.stdout
    before = len(daemon.finished("steady"))
    daemon.finished("steady", before + 2)
    daemon.write("[job.steady]\n@every 1s echo steady\n[job.half]\ntimeout = \"1h\"\n@every 1s true\n")
    daemon.finished("half")
    assert config_error(daemon) is None


def test_sighup_rereads_the_file(daemon):
    daemon.write(BASE)
    daemon.start()
    daemon.send(signal.SIGHUP)
    wait_until(lambda: "reloaded" in daemon.output(), what="the reload")


def test_a_removed_job_stops_being_scheduled_while_its_running_run_finishes_and_is_recorded(daemon):
    marker = daemon.tmp / "release"
    daemon.write(f"[job.slow]\n@every 1s while [ ! -e {marker} ]; do sleep 0.05; done\n" + BASE)
    daemon.start()
    wait_until(lambda: daemon.runs("slow"), what="the slow job to start")
    daemon.write(BASE)
    wait_until(lambda: names(daemon)[0] == "steady", what="the reload")  # file jobs come first
    # status still lists the run going on, under its removed job, until it ends.
    slow = wait_until(lambda: [j for j in daemon.status()["jobs"] if j["name"] == "slow"], what="slow")[0]
    assert slow["running"] and "removed from the jobs file" in slow["description"]
    assert "removed from the jobs file" in daemon.cli("status").stdout
    marker.touch()
    (run,) = daemon.finished("slow")
    assert run.status == "success"
    wait_until(lambda: names(daemon) == ["steady"], what="the removed job to leave status")
    daemon.finished("steady", len(daemon.finished("steady")) + 2)
    assert len(daemon.runs("slow")) == 1


def test_reload_command_reports_errors_and_exits_1(daemon):
    daemon.write(BASE)
    daemon.start()
    daemon.write("*/0 * * * * true\n")
    result = daemon.cli("reload")
    assert result.returncode == 1 and ":1: minute field" in result.stderr
    daemon.write(BASE)
    assert "reloaded: 1 job from" in daemon.cli("reload").stdout


def running_version(daemon):
    return daemon.status()["daemon"]["running_version"]


def test_a_typo_at_a_restart_runs_the_last_good_version_stored_in_the_run_log(daemon):
    daemon.write(BASE)
    daemon.start()
    loaded = running_version(daemon)
    assert loaded["from"] == "file" and loaded["jobs"] == 1
    daemon.finished("steady")
    assert daemon.stop() == 0
    daemon.write("[job.steady]\n@every 1s echo steady\n[job.typo]\n@evry 1s true\n")
    daemon.start()
    before = len(daemon.finished("steady"))
    daemon.finished("steady", before + 1)  # the good version runs after the restart
    data = daemon.status()
    assert data["daemon"]["config_error"].startswith(f"{daemon.jobs}:4:")
    assert data["daemon"]["running_version"] == {"loaded_at": loaded["loaded_at"], "jobs": 1,
                                                 "from": "run log"}
    assert [j["name"] for j in data["jobs"]] == ["steady"]
    text = daemon.cli("status").stdout
    assert "running    the last good version, loaded from the file " in text
    assert "kept in the run log (1 job): the file had errors when the daemon started" in text
    assert f"JOBS FILE ERROR (running the last good version): {daemon.jobs}:4:" in text
    assert "running the last good version of" in daemon.output()
    daemon.write("[job.steady]\n@every 1s echo steady\n[job.fixed]\n@every 1s true\n")
    daemon.finished("fixed")  # the fixed file is reloaded and runs
    data = daemon.status()
    assert data["daemon"]["config_error"] is None
    assert data["daemon"]["running_version"]["from"] == "file"
    assert data["daemon"]["running_version"]["jobs"] == 2
    assert "running    " not in daemon.cli("status").stdout


def test_the_version_stored_is_the_one_that_loaded_last_so_a_second_restart_runs_the_newest(daemon):
    daemon.write(BASE)
    daemon.start()
    daemon.write("[job.newer]\n@every 1s echo newer\n")
    wait_until(lambda: names(daemon) == ["newer"], what="the reload")
    daemon.write("[job.newer]\n@every 1s echo newer\n*/0 * * * * true\n")  # a bad reload stores nothing
    wait_until(lambda: config_error(daemon), what="the config error")
    assert daemon.stop() == 0
    daemon.start()
    daemon.finished("newer")
    assert names(daemon) == ["newer"] and running_version(daemon)["from"] == "run log"


def test_a_first_start_with_a_broken_file_and_nothing_stored_runs_no_jobs_and_says_so(daemon):
    daemon.write("[job.steady]\n@every 1s echo steady\n*/0 * * * * true\n")
    daemon.start()
    data = daemon.status()
    assert data["jobs"] == [] and data["daemon"]["config_error"].startswith(f"{daemon.jobs}:3:")
    assert data["daemon"]["running_version"] == {"loaded_at": None, "jobs": 0, "from": "none"}
    text = daemon.cli("status").stdout
    assert "running    no jobs: the file had errors when the daemon started and the run log holds " \
           "no good version of it" in text
    assert f"JOBS FILE ERROR (no jobs run): {daemon.jobs}:3:" in text
    result = daemon.cli("reload")
    assert result.returncode == 1
    assert "the daemon goes on running no jobs (no version of the file has loaded without errors" in result.stderr
    daemon.write(BASE)
    daemon.finished("steady")
    assert running_version(daemon)["from"] == "file"


def test_a_stored_version_of_another_jobs_file_is_not_run(daemon, tmp_path):
    daemon.write(BASE)
    daemon.start()
    daemon.stop()
    daemon.jobs = tmp_path / "other-jobs"
    daemon.write("*/0 * * * * true\n")
    daemon.start()
    data = daemon.status()
    assert data["jobs"] == [] and data["daemon"]["running_version"]["from"] == "none"


@pytest.mark.skipif(os.geteuid() != 0, reason="a root daemon refuses files others can write")
def test_a_file_refused_at_a_restart_runs_the_last_good_version_too(daemon):
    daemon.write(BASE)
    daemon.start()
    daemon.stop()
    os.chmod(daemon.jobs, 0o666)
    daemon.start()
    daemon.finished("steady", len(daemon.finished("steady")) + 1)
    data = daemon.status()
    assert "refused: group- or other-writable" in data["daemon"]["config_error"]
    assert data["daemon"]["running_version"]["from"] == "run log"
