"""Values exec cannot carry are errors at FILE:LINE, found by `check`, never by the daemon."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from cronsup import cli, jobsfile
from cronsup.jobsfile import JobsfileErrors


def errors(text: str) -> list[str]:
    with pytest.raises(JobsfileErrors) as caught:
        jobsfile.parse(text, "jobs")
    return [str(e) for e in caught.value.errors]


@pytest.mark.parametrize("key", ["workdir", "shell", "description", "mailto", "user", "timezone"])
def test_a_nul_in_a_string_option_is_an_error_at_its_line(key):
    (error,) = errors(f'[job.a]\n{key} = "/x\\u0000y"\n@every 1s true\n')
    assert error.startswith(f"jobs:2: {key}: ")
    if key not in ("user", "timezone"):
        assert error == f"jobs:2: {key}: a NUL character (\\u0000) cannot be passed to a program"


@pytest.mark.parametrize("key", ["workdir", "shell"])
def test_a_relative_workdir_or_shell_is_an_error(key):
    assert errors(f'[job.a]\n{key} = "bin/x"\n@every 1s true\n') == [
        f"jobs:2: {key}: 'bin/x' must be an absolute path"]


def test_a_path_too_long_for_the_kernel_is_an_error():
    (error,) = errors(f'[job.a]\nworkdir = "/{"d/" * 2100}"\n@every 1s true\n')
    assert error.startswith("jobs:2: workdir: ") and "is too long for a path (at most 4095 bytes)" in error
    (error,) = errors(f'[job.a]\nworkdir = "/{"d" * 256}"\n@every 1s true\n')
    assert "a part of a path is at most 255 bytes" in error


@pytest.mark.parametrize("env, message", [
    ('{ "A=B" = "1" }', "env: 'A=B' is not an environment variable name"),
    ('{ "" = "1" }', "env: '' is not an environment variable name"),
    ('{ "A\\u0000" = "1" }', "env: 'A\\x00' is not an environment variable name"),
    ('{ A = "x\\u0000" }', "env: A: a value cannot contain a NUL character"),
    ('{ SHELL = "bash" }', "env: SHELL: 'bash' must be an absolute path (the shell is run without "
                           "searching PATH)"),
    ('{ CRON_TZ = "Mars/Olympus" }', "env: CRON_TZ: unknown time zone 'Mars/Olympus'"),
    (f'{{ A = "{"x" * 140_000}" }}', "env: A: too long: KEY=value is at most 131071 bytes"),
])
def test_an_env_table_exec_could_not_pass_is_an_error(env, message):
    (error,) = errors(f"[job.a]\nenv = {env}\n@every 1s true\n")
    assert error.startswith(f"jobs:2: {message}"), error


def test_an_environment_line_whose_name_holds_an_equals_sign_is_an_error():
    assert errors('"A=B"=1\n@every 1s true\n') == ["jobs:1: environment variable name 'A=B' cannot contain '='"]


def test_a_relative_shell_line_is_an_error_as_cron_would_never_run_it():
    assert errors("SHELL=bash\n@every 1s true\n") == [
        "jobs:1: SHELL: 'bash' must be an absolute path (the shell is run without searching PATH)"]
    assert jobsfile.parse("SHELL=\n@every 1s true\n").jobs[0].shell == "/bin/sh"  # unset: the default


def test_a_nul_byte_in_a_command_or_an_environment_line_is_an_error():
    assert errors("A=x\0y\n@every 1s tr\0ue\n") == [
        "jobs:1: the line contains a NUL byte; is this a binary file?",
        "jobs:2: the line contains a NUL byte; is this a binary file?"]


def test_a_command_too_long_for_exec_is_an_error():
    (error,) = errors(f"@every 1s true {'x' * 140_000}\n")
    assert error == "jobs:1: the command is too long to run: at most 131071 bytes (put it in a script)"


@pytest.mark.parametrize("user", ["no body", "-x", "a" * 300, ""])
def test_a_user_name_that_cannot_be_one_is_an_error(user):
    (error,) = errors(f'[job.a]\nuser = "{user}"\n@every 1s true\n')
    assert error.startswith("jobs:2: user: ") and error.endswith("is not a user name")


def test_check_reports_a_nul_in_workdir_that_once_crashed_the_daemon(tmp_path):
    path = tmp_path / "jobs"
    path.write_text('[job.a]\nworkdir = "\\u0000"\n@every 1s true\n[job.b]\nshell = "/bin/sh\\u0000"\n'
                    '@every 1s true\n')
    result = CliRunner().invoke(cli.main, ["check", str(path)])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"{path}:2: workdir: a NUL character (\\u0000) cannot be passed to a program",
        f"{path}:5: shell: a NUL character (\\u0000) cannot be passed to a program"]


def test_a_daemon_given_a_nul_workdir_or_shell_keeps_running_its_last_good_jobs(daemon):
    daemon.write("[job.tick]\n@every 1s true\n")
    daemon.start()
    daemon.finished("tick")
    daemon.write('[job.tick]\nworkdir = "/tmp\\u0000"\n@every 1s true\n'
                 '[job.sh]\nshell = "\\u0000"\n@every 1s true\n')
    assert daemon.cli("reload").returncode != 0
    error = daemon.status()["daemon"]["config_error"]
    assert error.endswith(":2: workdir: a NUL character (\\u0000) cannot be passed to a program "
                          "(and 1 more error)"), error
    count = len(daemon.finished("tick"))
    daemon.finished("tick", count + 2)  # the last good version goes on
    assert daemon.proc.poll() is None and daemon.stop() == 0


@pytest.mark.parametrize("line, message", [
    ("output_limit = inf", "output_limit: the size inf is out of range: at most 1 PiB"),
    ("timeout = nan", "timeout: the duration nan is out of range: at most 100 years"),
    ("jitter = inf", "jitter: the duration inf is out of range: at most 100 years"),
    ("retry_delay = 1e300", "retry_delay: the duration 1e+300 is out of range: at most 100 years"),
    ('kill_grace = "99999999999999999999d"', "kill_grace: the duration '99999999999999999999d' is out "
                                             "of range: at most 100 years"),
    ("retry_backoff = nan", "retry_backoff: must be 1 or more (1 keeps the delay constant), got nan"),
    ("retry_backoff = inf", "retry_backoff: must be at most 1000, got inf"),
])
def test_a_number_toml_allows_but_no_clock_can_hold_is_an_error_not_a_traceback(line, message):
    assert errors(f"[job.a]\n{line}\n@every 1s true\n") == [f"jobs:2: {message}"]


def test_an_every_beyond_a_century_is_an_error():
    assert errors("@every 99999999999999999999d true\n") == [
        "jobs:1: @every: the duration '99999999999999999999d' is out of range: at most 100 years"]


TOML_VALUES = ["inf", "-inf", "nan", "1e308", "-1e308", "9223372036854775807", "-9223372036854775808",
               "0", "-1", "0.0", '""', '"\\u0000"', '"x"', "[]", "[inf]", "{}", "{ A = nan }", "true",
               "1979-05-27T07:32:00Z", '"99999999999999999999d"', '"1e400"']


@pytest.mark.parametrize("key", sorted(jobsfile.options.SPECS))
@pytest.mark.parametrize("value", TOML_VALUES)
def test_any_toml_value_of_any_option_is_accepted_or_an_error_never_a_traceback(key, value):
    try:
        jobsfile.parse(f"[job.a]\n{key} = {value}\n@every 1s true\n", "jobs")
    except JobsfileErrors as e:
        assert all(err.line == 2 for err in e.errors), e


@pytest.mark.parametrize("key", ["workdir", "shell"])
def test_a_control_character_in_a_path_is_an_error_so_every_reason_stays_one_line(key):
    assert errors(f'[job.a]\n{key} = "/tmp/a\\nb"\n@every 1s true\n') == [
        f"jobs:2: {key}: '/tmp/a\\nb' contains a control character"]
