"""Hot reload with real edits of the jobs file, as editors make them."""

import os
import signal

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
    wait_until(lambda: names(daemon) == ["steady"], what="the reload")
    marker.touch()
    (run,) = daemon.finished("slow")
    assert run.status == "success"
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
