import datetime as dt
import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from cronsup import cli, jobsfile

HERE = os.path.dirname(__file__)
CRONTAB = os.path.join(HERE, "data", "debian", "system", "crontab--cron-daemon-common")


def invoke(*args, input=None):
    return CliRunner().invoke(cli.main, list(args), input=input, catch_exceptions=False)


def test_check_lists_the_jobs_of_a_valid_file(tmp_path):
    path = tmp_path / "jobs"
    path.write_text("[job.backup]\nretries = 2\n0 2 * * * /usr/local/bin/backup\n")
    result = invoke("check", str(path))
    assert result.exit_code == 0
    assert f"{path}: 1 job, no errors" in result.output
    assert "backup" in result.output and "0 2 * * *" in result.output


def test_check_uses_the_jobs_option_and_environment(tmp_path):
    path = tmp_path / "jobs"
    path.write_text("@daily /bin/true\n")
    assert CliRunner(env={"CRONSUP_JOBS": str(path)}).invoke(cli.main, ["check"]).exit_code == 0
    assert invoke("check", "--jobs", str(path)).exit_code == 0


def test_check_prints_every_error_with_file_and_line_and_exits_1(tmp_path):
    path = tmp_path / "jobs"
    path.write_text("*/0 * * * * /bin/a\n# ok\n0 25 * * * /bin/b\n")
    result = CliRunner().invoke(cli.main, ["check", str(path)])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert [line.split(": ", 1)[0] for line in lines] == [f"{path}:1", f"{path}:3"]
    assert "Traceback" not in result.output


def test_check_of_a_missing_file_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(cli.main, ["check", str(tmp_path / "nope")])
    assert result.exit_code == 1 and "cannot read" in result.stderr and "No such file" in result.stderr


def test_check_accepts_system_crontabs_with_system():
    result = invoke("check", "--system", CRONTAB)
    assert result.exit_code == 0 and "4 jobs" in result.output


def test_next_prints_fire_times_with_offsets_following_dst():
    result = invoke("next", "30 2 * * *", "--tz", "Europe/Berlin", "--from", "2026-10-24T00:00", "-n", "3")
    assert result.output.split() == [
        "2026-10-24T02:30:00+02:00", "2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]


def test_next_prints_json():
    result = invoke("next", "@hourly", "--tz", "UTC", "--from", "2026-01-01T00:30:00+00:00", "-n", "2", "--json")
    assert json.loads(result.output) == ["2026-01-01T01:00:00+00:00", "2026-01-01T02:00:00+00:00"]


def test_next_of_every_from_now_prints_whole_seconds():
    result = invoke("next", "@every 20s", "-n", "3")
    assert result.exit_code == 0
    times = [dt.datetime.fromisoformat(line) for line in result.output.split() if line[:1].isdigit()]
    assert len(times) == 3 and all(t.microsecond == 0 for t in times)
    assert (times[1] - times[0]).total_seconds() == 20


def test_next_of_a_job_uses_its_zone(tmp_path):
    path = tmp_path / "jobs"
    path.write_text("[job.tokyo]\ntimezone = \"Asia/Tokyo\"\n0 9 * * * /bin/x\n")
    result = invoke("next", "tokyo", "--jobs", str(path), "--from", "2025-12-31T23:00:00+00:00", "-n", "1")
    assert result.output.strip() == "2026-01-01T09:00:00+09:00"


def test_next_of_an_unknown_job_suggests_close_names(tmp_path):
    path = tmp_path / "jobs"
    path.write_text("[job.backup]\n0 2 * * * /bin/x\n")
    result = CliRunner().invoke(cli.main, ["next", "bakup", "--jobs", str(path)])
    assert result.exit_code == 2 and "did you mean backup" in result.stderr


def test_next_of_a_bad_expression_is_a_usage_error():
    result = CliRunner().invoke(cli.main, ["next", "*/0 * * * *"])
    assert result.exit_code == 2 and "positive integer" in result.stderr


def test_next_of_an_expression_that_never_fires_prints_nothing():
    result = CliRunner().invoke(cli.main, ["next", "0 0 30 2 *", "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout) == []
    assert "never fires" in result.stderr


def test_next_counts_every_from_the_start():
    result = invoke("next", "@every 90s", "--from", "2026-01-01T00:00:00+00:00", "-n", "2", "--tz", "UTC")
    assert result.stdout.split() == ["2026-01-01T00:01:30+00:00", "2026-01-01T00:03:00+00:00"]


def test_import_writes_a_file_that_check_accepts_with_the_same_schedules(tmp_path):
    result = invoke("import", "--system", CRONTAB)
    out = tmp_path / "jobs"
    out.write_text(result.output)
    assert invoke("check", str(out)).exit_code == 0
    before = jobsfile.load(CRONTAB, system=True).jobs
    after = jobsfile.load(str(out)).jobs
    assert [(j.schedule, j.command, j.user, j.environment, j.shell) for j in before] == \
           [(j.schedule, j.command, j.user, j.environment, j.shell) for j in after]
    assert all(not j.auto_named for j in after)
    # Names a person would write, where a plain line would be named run-parts, run-parts-XXXX ...
    assert [j.name for j in after] == ["cron-hourly", "cron-daily", "cron-weekly", "cron-monthly"]
    # cron mailed root (the lines' user) with MAILTO unset: kept as the mailto option.
    assert [j.mailto for j in before] == [None] * 4 and [j.mailto for j in after] == ["root"] * 4


def test_import_of_several_crontabs_keeps_each_files_environment_to_itself(tmp_path):
    a = tmp_path / "a"
    a.write_text("SHELL=/bin/bash\nFOO=1\n0 1 * * * /bin/a\n")
    b = tmp_path / "b"
    b.write_text("0 2 * * * /bin/b\n0 3 * * * /bin/a\n")
    out = tmp_path / "jobs"
    out.write_text(invoke("import", str(a), str(b)).output)
    jobs = jobsfile.load(str(out)).jobs
    assert [j.name for j in jobs][:2] == ["a", "b"] and jobs[2].name.startswith("a-")
    assert jobs[0].shell == "/bin/bash" and jobs[0].env["FOO"] == "1"
    assert jobs[1].shell == "/bin/sh" and "FOO" not in jobs[1].env


def test_import_skips_cron_d_files_that_cron_ignores_with_a_note(tmp_path):
    crond = tmp_path / "cron.d"
    crond.mkdir()
    for name in ("sysstat", "sysstat.dpkg-old", "job.disabled", "backup~", "e2scrub_all"):
        (crond / name).write_text(f"0 1 * * * root /usr/bin/{name.split('.')[0].rstrip('~')}\n")
    result = CliRunner().invoke(cli.main, ["import", "--system", *sorted(map(str, crond.iterdir()))])
    assert result.exit_code == 0
    skipped = [line for line in result.stderr.splitlines() if "skipping" in line]
    assert len(skipped) == 3 and all("cron ignores it" in line for line in skipped)
    assert {line.split()[2].rstrip(":").rsplit("/", 1)[1] for line in skipped} == \
        {"sysstat.dpkg-old", "job.disabled", "backup~"}
    assert "dpkg-old" not in result.stdout and "/usr/bin/sysstat" in result.stdout
    assert "/usr/bin/e2scrub_all" in result.stdout


def test_a_system_file_outside_cron_d_is_read_whatever_its_name(tmp_path):
    path = tmp_path / "crontab.old"
    path.write_text("0 1 * * * root /bin/true\n")
    result = CliRunner().invoke(cli.main, ["import", "--system", str(path)])
    assert result.exit_code == 0 and "/bin/true" in result.stdout and "skipping" not in result.stderr


def test_import_keeps_crons_default_mail_to_the_crontabs_owner(tmp_path):
    import pwd

    me = pwd.getpwuid(os.geteuid()).pw_name
    result = invoke("import", input="0 1 * * * /bin/a\nMAILTO=ops\n0 2 * * * /bin/b\n")
    out = tmp_path / "jobs"
    out.write_text(result.output)
    jobs = {j.name: j for j in jobsfile.load(str(out)).jobs}
    assert jobs["a"].mailto == me and jobs["b"].mailto == "ops"
    assert "cron mailed a job's output" in result.output
    silent = invoke("import", input='MAILTO=""\n0 1 * * * /bin/a\n').output
    assert "mailto" not in silent and "cron mailed" not in silent


def test_import_reads_standard_input():
    result = invoke("import", input="MAILTO=ops\n*/5 * * * * /usr/bin/poll%input\n")
    assert "[job.poll]" in result.output and "*/5 * * * * /usr/bin/poll%input" in result.output
    assert "MAILTO=ops" in result.output


def test_import_of_a_bad_crontab_reports_its_errors():
    result = CliRunner().invoke(cli.main, ["import"], input="61 * * * * /bin/x\n")
    assert result.exit_code == 1 and "<stdin>:1:" in result.stderr


def test_every_command_has_help_with_an_example():
    for name in cli.COMMANDS:
        command = cli.command(name)
        assert command.help, f"{name} has no help"
        assert "Example" in command.help, f"{name}'s help shows no example"
    assert "Example" in invoke("--help").output or "Start here" in invoke("--help").output


DEBIAN = sorted(p for p in (os.path.join(HERE, "data", "debian", "system", f)
                            for f in os.listdir(os.path.join(HERE, "data", "debian", "system"))))


@pytest.mark.parametrize("path", DEBIAN, ids=os.path.basename)
def test_import_of_each_packaged_crontab_keeps_its_meaning(tmp_path, path):
    out = tmp_path / "jobs"
    out.write_text(invoke("import", "--system", path).output)
    before = jobsfile.load(path, system=True).jobs
    after = jobsfile.load(str(out)).jobs
    fields = lambda j: (j.schedule, j.command, j.stdin, j.user, j.environment, j.shell, j.timezone)  # noqa: E731
    assert [fields(j) for j in before] == [fields(j) for j in after]
    # With MAILTO unset cron mailed the line's user: the import says so in `mailto`.
    assert [j.user if j.mailto is None else j.mailto for j in before] == [j.mailto for j in after]


def test_import_of_all_packaged_crontabs_at_once_keeps_each_ones_meaning(tmp_path):
    out = tmp_path / "jobs"
    out.write_text(invoke("import", "--system", *DEBIAN).output)
    after = jobsfile.load(str(out)).jobs
    before = [j for p in DEBIAN for j in jobsfile.load(p, system=True).jobs]
    assert len({j.name for j in after}) == len(after) == len(before)
    for a, b in zip(before, after):
        assert (a.schedule, a.command, a.user, a.env, a.shell, a.mailto or a.user) == \
               (b.schedule, b.command, b.user, b.env, b.shell, b.mailto)
    assert {"cron-daily", "sa1", "sa1-2359", "anacron", "sessionclean"} <= {j.name for j in after}


def test_check_hints_at_system_format_when_every_command_starts_with_a_user():
    result = CliRunner().invoke(cli.main, ["check", CRONTAB])
    assert result.exit_code == 0 and "add --system" in result.stderr


def test_import_of_a_system_crontab_without_system_is_refused_with_the_hint():
    result = CliRunner().invoke(cli.main, ["import", CRONTAB])
    assert result.exit_code == 1 and result.stdout == ""
    assert "looks like a system crontab" in result.stderr and "import it with --system" in result.stderr
    assert "(root)" in result.stderr


def test_import_of_a_user_crontab_whose_commands_start_with_a_program_named_like_a_user_works(tmp_path):
    # `sync` is a user on Debian and a program everywhere: a user crontab, not a system one.
    import pwd
    import shutil

    try:
        pwd.getpwnam("sync")
    except KeyError:
        pytest.skip("no user called sync here")
    assert shutil.which("sync")
    result = CliRunner().invoke(cli.main, ["import"], input="@hourly sync\n")
    assert result.exit_code == 0 and "@hourly sync" in result.stdout


def test_importing_an_imported_file_again_stays_valid(tmp_path):
    once = tmp_path / "once"
    once.write_text(invoke("import", "--system", CRONTAB).output)
    twice = tmp_path / "twice"
    twice.write_text(invoke("import", str(once)).output)
    assert [j.user for j in jobsfile.load(str(twice)).jobs] == ["root"] * 4


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_check_as_root_refuses_a_file_others_could_write_as_the_daemon_does(tmp_path):
    path = tmp_path / "jobs"
    path.write_text("@daily /bin/true\n")
    path.chmod(0o666)
    result = CliRunner().invoke(cli.main, ["check", str(path)])
    assert result.exit_code == 1 and "group- or other-writable (mode 666)" in result.stderr


def test_daemon_keep_size_takes_a_size_and_refuses_a_tiny_or_bad_one(tmp_path):
    assert "--keep-size SIZE" in invoke("daemon", "--help").output
    for bad, why in [("10", "less than 1MiB"), ("lots", "bad size 'lots'")]:
        result = invoke("daemon", "--keep-size", bad, "--jobs", str(tmp_path / "jobs"),
                        "--db", str(tmp_path / "runs.db"))
        assert result.exit_code == 2 and why in result.output, result.output
        assert "Traceback" not in result.output and not (tmp_path / "runs.db").exists()


def test_a_mistyped_command_names_the_close_one():
    result = CliRunner().invoke(cli.main, ["stauts"])
    assert result.exit_code == 2 and "No such command 'stauts': did you mean 'status'?" in result.output
    assert "did you mean" not in CliRunner().invoke(cli.main, ["xyzzy"]).output


def test_a_command_imports_its_own_module_only(tmp_path):
    # `status` is run often and from scripts: it pays for no other command's imports.
    code = ("import sys; from cronsup.cli import main\n"
            "try:\n    main(['status', '--jobs', sys.argv[1], '--db', sys.argv[2]])\n"
            "except SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.startswith('cronsup.cli_')))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "jobs"), str(tmp_path / "runs.db")],
                         capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[-1] == "['cronsup.cli_status']"
