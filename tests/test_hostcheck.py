"""`cronsup check` warns about what would not run as meant on this host, and still exits 0."""

import re
import textwrap

import pytest
from click.testing import CliRunner

from cronsup import cli, hostcheck, jobsfile


def check(tmp_path, text: str, *args: str):
    path = tmp_path / "jobs"
    path.write_text(textwrap.dedent(text))
    result = CliRunner().invoke(cli.main, ["check", *args, str(path)])
    warnings = [line for line in result.stderr.splitlines() if re.search(r":\d+: warning: ", line)]
    return result, path, warnings


def test_a_user_shell_or_workdir_missing_here_is_a_warning_not_an_error(tmp_path):
    result, path, warnings = check(tmp_path, """\
        [job.a]
        user = "no-such-user-here"
        shell = "/no/such/shell"
        workdir = "/no/such/dir"
        @daily true
        """)
    assert result.exit_code == 0 and "1 job, no errors" in result.stdout
    assert warnings == [
        f"{path}:5: warning: user 'no-such-user-here' is not a user on this host",
        f"{path}:5: warning: shell '/no/such/shell' is not an executable file on this host: "
        "the job cannot start here",
        f"{path}:5: warning: workdir '/no/such/dir' is not a directory on this host: "
        "the job cannot start here",
    ]


def test_users_shells_and_dirs_that_exist_get_no_warning(tmp_path):
    result, _, warnings = check(tmp_path, f"""\
        [job.a]
        user = "nobody"
        shell = "/bin/sh"
        workdir = "{tmp_path}"
        @daily true
        """)
    assert result.exit_code == 0 and warnings == []


@pytest.mark.parametrize("command, runs", [
    ("echo $(date +%F) > /tmp/x", "echo $(date +"),
    ('cp a "backup-$(date +%F)"', 'cp a "backup-$(date +'),
    ("date +%s > /tmp/now", "date +"),
    ("printf '%s\\n' x", "printf '"),
    ("echo `date +%H`", "echo `date +"),
    ("if [ $(expr \\( $(date +%s) ) ]; then :; fi", "if [ $(expr \\( $(date +"),
])
def test_a_percent_that_cuts_the_command_short_is_a_warning(tmp_path, command, runs):
    result, path, warnings = check(tmp_path, f"@daily {command}\n")
    assert result.exit_code == 0
    assert len(warnings) == 1 and warnings[0].startswith(f"{path}:1: warning: the unescaped %")
    assert f"runs '{runs}';" in warnings[0] and "write \\% for a literal %" in warnings[0]


@pytest.mark.parametrize("command", [
    "cat > /tmp/note%Dear admin,%cronsup was here.%",  # cron's standard input, on purpose
    "echo $(date +\\%F)",
    "mail -s 'at 10\\%' joe%Joe,%",
    "true",
])
def test_a_percent_used_on_purpose_or_escaped_gets_no_warning(tmp_path, command):
    result, _, warnings = check(tmp_path, f"@daily {command}\n")
    assert result.exit_code == 0 and warnings == []


def test_a_system_line_without_its_user_field_is_a_warning(tmp_path):
    result, path, warnings = check(tmp_path, "17 * * * * echo hello\n", "--system")
    assert result.exit_code == 0
    assert len(warnings) == 1 and warnings[0].startswith(
        f"{path}:1: warning: the line's user field 'echo' is not a user on this host")
    assert "without its user field" in warnings[0]


def test_an_import_of_such_a_line_gets_the_same_warning_from_check(tmp_path):
    # import keeps the line's meaning: `user = "echo"`; check then says what happened.
    crond = tmp_path / "crond"
    crond.write_text("17 * * * * echo hello\n")
    imported = CliRunner().invoke(cli.main, ["import", "--system", str(crond)])
    assert 'user = "echo"' in imported.stdout
    result, _, warnings = check(tmp_path, imported.stdout)
    assert result.exit_code == 0 and len(warnings) == 1
    assert "user 'echo' is not a user on this host; is 'echo' the command" in warnings[0]


def test_warnings_come_in_line_order(tmp_path):
    jf = jobsfile.parse("[job.b]\nworkdir = \"/no/b\"\n@daily true\n@daily date +%F\n", "jobs")
    assert [w.line for w in hostcheck.warnings(jf)] == [3, 4]
