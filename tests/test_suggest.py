"""The one "did you mean" rule, and the places that use it."""

import pytest
from click.testing import CliRunner

from cronsup import cli, jobsfile, options, schedule, suggest


@pytest.mark.parametrize("word, names, expected", [
    ("@daly", ["@daily", "@hourly", "@weekly", "@monthly"], ["@daily"]),
    ("timeuot", ["timeout", "retries", "overlap"], ["timeout"]),  # two letters swapped
    ("bakup", ["backup", "report"], ["backup"]),                  # one left out
    ("back", ["report", "backup-db"], ["backup-db"]),             # the start of a name
    ("BACKUP", ["backup"], ["backup"]),                           # other capitals
    ("retry", ["retries", "timeout"], ["retries"]),               # all but its last letter
    ("skpi", ["skip", "queue", "allow", "replace"], ["skip"]),
])
def test_it_suggests_close_names(word, names, expected):
    assert suggest.close_names(word, names) == expected


@pytest.mark.parametrize("word, names", [
    ("nosuchjob", ["hello", "flaky", "nightly", "job-runner"]),
    ("zzz", ["hello", "flaky"]),
    ("a", ["backup", "report"]),  # one letter is in many names: not a guess
    ("x", ["xy"]),  # a name begun by too short a word is not a guess either
])
def test_it_suggests_nothing_unrelated(word, names):
    assert suggest.close_names(word, names) == []


def test_the_closest_name_comes_first():
    assert suggest.close_names("backup", ["backups", "backup2", "bakcup", "backup"]) == \
        ["backups", "backup2", "bakcup"]  # equally close: in the order given
    assert suggest.did_you_mean("helo", ["hello"]) == "; did you mean hello?"
    assert suggest.did_you_mean("helo", ["hello"], quote=True) == "; did you mean 'hello'?"
    assert suggest.did_you_mean("zzz", ["hello"]) == ""


def test_an_unknown_keyword_gets_a_suggestion_in_the_jobs_file_and_in_next(tmp_path):
    with pytest.raises(jobsfile.JobsfileErrors) as e:
        jobsfile.parse("@daly /bin/backup\n", "jobs")
    assert "unknown keyword '@daly' (did you mean '@daily'?)" in str(e.value.errors[0])
    with pytest.raises(schedule.ScheduleError, match=r"did you mean '@daily'"):
        schedule.parse_schedule("@daly")
    with pytest.raises(schedule.ScheduleError, match=r"keywords are lowercase"):
        schedule.parse_schedule("@DAILY")
    result = CliRunner().invoke(cli.main, ["next", "@daly"])
    assert result.exit_code == 2 and "did you mean '@daily'?" in result.output


def test_a_misspelt_choice_and_zone_get_a_suggestion():
    with pytest.raises(ValueError, match=r"did you mean 'skip'"):
        options.convert("overlap", "skpi")
    with pytest.raises(ValueError, match=r"did you mean 'Europe/Berlin'"):
        schedule.load_zone("Europe/Berln")


def test_run_of_an_unrelated_name_lists_the_jobs_instead_of_guessing(tmp_path):
    path = tmp_path / "jobs"
    path.write_text("[job.backup]\n@daily true\n[job.report]\n@daily true\n")
    result = CliRunner().invoke(cli.main, ["next", "nosuchjob", "--jobs", str(path)])
    assert result.exit_code == 2 and "did you mean" not in result.output
    assert cli._suggest("nosuchjob", ["backup", "report"]) == "; its jobs are backup, report"
