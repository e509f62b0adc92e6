import glob
import os
import textwrap

import pytest

from cronsup import jobsfile
from cronsup.jobsfile import JobsfileErrors, parse, parse_bytes, split_percent
from cronsup.model import AfterJobs, Catchup, Cron, Every, Overlap, Reboot

HERE = os.path.dirname(__file__)
CRONIE = os.path.join(HERE, "data", "cronie")


def jobs(text: str, **kw):
    return parse(textwrap.dedent(text), "jobs", **kw).jobs


def errors(text: str, **kw) -> list[tuple[int, str]]:
    with pytest.raises(JobsfileErrors) as info:
        parse(textwrap.dedent(text), "jobs", **kw)
    return [(e.line, e.message) for e in info.value.errors]


def the_error(text: str, **kw) -> tuple[int, str]:
    found = errors(text, **kw)
    assert len(found) == 1, found
    return found[0]


# -- real crontabs ------------------------------------------------------------------------

def _real(kind: str) -> list[str]:
    found = sorted(glob.glob(os.path.join(HERE, "data", "debian", kind, "*")))
    found += sorted(glob.glob(os.path.join(CRONIE, kind, "*")))
    return [f for f in found if not f.endswith(".md")]


@pytest.mark.parametrize("path", _real("system"), ids=os.path.basename)
def test_it_accepts_every_real_system_crontab(path):
    jf = jobsfile.load(path, system=True)
    assert jf.jobs
    assert all(job.user for job in jf.jobs)


@pytest.mark.parametrize("path", _real("user"), ids=os.path.basename)
def test_it_accepts_every_real_user_crontab(path):
    assert jobsfile.load(path).jobs


def test_the_debian_system_crontab_means_what_it_meant_to_cron():
    jf = jobsfile.load(os.path.join(HERE, "data", "debian", "system", "crontab--cron-daemon-common"),
                       system=True)
    hourly = jf.jobs[0]
    assert hourly.name == "run-parts"
    assert hourly.user == "root"
    assert hourly.command == "cd / && run-parts --report /etc/cron.hourly"
    assert hourly.shell == "/bin/sh"
    assert hourly.env["PATH"] == "/usr/local/sbin:/usr/local/bin:/sbin:/bin:/usr/sbin:/usr/bin"
    weekly = jf.jobs[2]
    assert isinstance(weekly.schedule, Cron) and weekly.schedule.weekdays == (0,)  # 7 is Sunday


def test_the_cronie_example_keeps_cron_tz_and_the_percent_input():
    jf = jobsfile.load(os.path.join(CRONIE, "user", "crontab.5-example--cronie-git"))
    mail = next(j for j in jf.jobs if j.command.startswith("mail"))
    assert mail.timezone == "Japan"
    assert mail.command == "mail -s \"It's 10pm\" joe"
    assert mail.stdin == "Joe,\n\nWhere are your kids?\n"
    assert mail.mailto == "paul"


def test_mdadm_escaped_percent_reaches_the_shell_as_a_percent():
    jf = jobsfile.load(os.path.join(HERE, "data", "debian", "system", "mdadm--mdadm"), system=True)
    assert "$(date +%d)" in jf.jobs[0].command
    assert jf.jobs[0].stdin is None


# -- lines and blocks -----------------------------------------------------------------------

def test_it_reads_the_spec_example():
    found = jobs("""\
        # /etc/cronsup/jobs
        SHELL=/bin/bash
        PATH=/usr/local/bin:/usr/bin:/bin
        MAILTO=""
        CRON_TZ=Europe/Berlin

        [defaults]
        timeout = "1h"

        # a plain crontab line: its name comes from the command (here "poll-queue")
        */5 * * * * /usr/local/bin/poll-queue --fast

        [job.backup]
        description = "Nightly full backup"
        timeout = "3h"
        retries = 3
        retry_delay = "2m"
        0 2 * * * /usr/local/bin/backup --all

        [job.report]
        after = ["backup"]
        @after /usr/local/bin/report --mail
        """)
    poll, backup, report = found
    assert poll.name == "poll-queue" and poll.timeout == 3600 and poll.line == 11
    assert poll.shell == "/bin/bash" and poll.timezone == "Europe/Berlin" and poll.mailto == ""
    assert backup.name == "backup" and backup.timeout == 3 * 3600 and backup.retries == 3
    assert backup.retry_delay == 120 and backup.description == "Nightly full backup"
    assert report.after == ("backup",) and isinstance(report.schedule, AfterJobs)
    assert report.timeout == 3600  # from [defaults]


def test_every_option_is_parsed_into_a_typed_value():
    (job,) = jobs("""\
        [job.full]
        description = "all of them"
        timeout = "1h30m"
        kill_grace = 5
        overlap = "queue"
        retries = 2
        retry_delay = "10s"
        retry_backoff = 1.5
        retry_max_delay = "10m"
        retry_jitter = false
        success_codes = [0, 3]
        env = { A = "1", B = "two" }
        workdir = "/srv"
        user = "nobody"
        shell = "/bin/bash"
        timezone = "America/New_York"
        jitter = "30s"
        catchup = "last"
        output_limit = "64KiB"
        mailto = "ops@example.com"
        enabled = false
        @every 90s /bin/true
        """)
    assert job.timeout == 5400 and job.kill_grace == 5 and job.overlap is Overlap.QUEUE
    assert job.retries == 2 and job.retry_delay == 10 and job.retry_backoff == 1.5
    assert job.retry_max_delay == 600 and job.retry_jitter is False
    assert job.success_codes == (0, 3) and job.env == {"A": "1", "B": "two"}
    assert job.workdir == "/srv" and job.user == "nobody" and job.shell == "/bin/bash"
    assert job.timezone == "America/New_York" and job.jitter == 30
    assert job.catchup is Catchup.LAST and job.output_limit == 65536
    assert job.mailto == "ops@example.com" and job.enabled is False
    assert job.schedule == Every(text="@every 90s", seconds=90)


def test_defaults_apply_to_jobs_after_them_and_a_later_defaults_block_overrides_per_key():
    a, b, c = jobs("""\
        * * * * * /bin/a
        [defaults]
        timeout = "1h"
        retries = 1
        * * * * * /bin/b
        [defaults]
        retries = 4
        * * * * * /bin/c
        """)
    assert (a.timeout, a.retries) == (None, 0)
    assert (b.timeout, b.retries) == (3600, 1)
    assert (c.timeout, c.retries) == (3600, 4)


def test_a_job_block_overrides_defaults_and_timeout_none_switches_it_off():
    (job,) = jobs("""\
        [defaults]
        timeout = "1h"
        [job.long]
        timeout = "none"
        * * * * * /bin/long
        """)
    assert job.timeout is None


def test_environment_lines_follow_crontab_quoting_rules():
    (job,) = jobs("""\
        A=plain value   
        B = "  spaced  "
        C='single'
        D =
        "E F" = quoted name
        G="unterminated
        * * * * * env
        """.replace('G="unterminated\n', ""))
    assert job.env == {"A": "plain value", "B": "  spaced  ", "C": "single", "D": "", "E F": "quoted name"}


def test_environment_lines_apply_only_to_jobs_below_them():
    a, b = jobs("""\
        * * * * * /bin/a
        FOO=bar
        * * * * * /bin/b
        """)
    assert "FOO" not in a.env and b.env["FOO"] == "bar"


def test_the_env_option_overrides_environment_lines():
    (job,) = jobs("""\
        FOO=file
        [job.x]
        env = { FOO = "option" }
        * * * * * /bin/x
        """)
    assert job.env["FOO"] == "option"


def test_percent_ends_the_command_and_escaped_percent_is_literal():
    assert split_percent("date +\\%s") == ("date +%s", None)
    assert split_percent("cat%line1%line2") == ("cat", "line1\nline2")
    assert split_percent("cat%a\\%b%") == ("cat", "a%b\n")
    assert split_percent("echo \\\\x") == ("echo \\\\x", None)


def test_it_accepts_every_macro_and_the_extensions():
    found = jobs("""\
        @yearly /bin/a
        @annually /bin/b
        @monthly /bin/c
        @weekly /bin/d
        @daily /bin/e
        @midnight /bin/f
        @hourly /bin/g
        @reboot /bin/h
        @every 1h30m /bin/i
        """)
    assert isinstance(found[7].schedule, Reboot)
    assert found[8].schedule.seconds == 5400
    assert found[6].schedule.wildcard and not found[4].schedule.wildcard


def test_the_system_format_takes_a_user_field():
    (job,) = jobs("5 * * * * www-data php /srv/cron.php\n", system=True)
    assert job.user == "www-data" and job.command == "php /srv/cron.php"
    (job,) = jobs("@reboot root /bin/boot\n", system=True)
    assert job.user == "root" and isinstance(job.schedule, Reboot)


def test_a_missing_final_newline_and_a_byte_order_mark_are_accepted():
    jf = parse_bytes(b"\xef\xbb\xbfA=1\n* * * * * /bin/true", "jobs")
    assert jf.jobs[0].command == "/bin/true" and jf.jobs[0].env == {"A": "1"}


def test_a_multiline_toml_array_with_numbers_stays_in_the_block():
    (job,) = jobs("""\
        [job.codes]
        success_codes = [
          0,
          3,
        ]
        * * * * * /bin/x
        """)
    assert job.success_codes == (0, 3)


# -- names ----------------------------------------------------------------------------------

def test_names_come_from_the_program_passing_over_shell_words():
    found = jobs("""\
        */5 * * * * /usr/local/bin/poll-queue --fast
        0 * * * * cd / && run-parts --report /etc/cron.daily
        0 1 * * * test -x /usr/sbin/foo && /usr/sbin/foo --now
        0 2 * * * [ -x /usr/lib/php/sessionclean ] && /usr/lib/php/sessionclean
        0 3 * * * nice -n 19 /opt/backup.sh
        """)
    assert [j.name for j in found] == ["poll-queue", "run-parts", "foo", "sessionclean", "backup"]


def test_colliding_names_get_a_suffix_derived_from_their_own_line():
    first = jobs("""\
        0 * * * * run-parts /etc/cron.hourly
        0 0 * * * run-parts /etc/cron.daily
        """)
    assert first[0].name == "run-parts"
    assert first[1].name.startswith("run-parts-") and len(first[1].name) == len("run-parts-") + 4
    # adding, removing and editing other lines does not rename it
    second = jobs("""\
        * * * * * /bin/other
        0 * * * * run-parts /etc/cron.hourly
        5 5 * * * /bin/edited --flag
        0 0 * * * run-parts /etc/cron.daily
        """)
    assert [j.name for j in second if "run-parts" in j.command] == [first[0].name, first[1].name]


def test_a_pinned_name_wins_over_a_derived_one():
    a, b = jobs("""\
        0 * * * * /bin/backup
        [job.backup]
        0 1 * * * /bin/other
        """)
    assert b.name == "backup" and a.name.startswith("backup-")


def test_identical_lines_still_get_distinct_names():
    found = jobs("* * * * * /bin/x\n* * * * * /bin/x\n* * * * * /bin/x\n")
    assert len({j.name for j in found}) == 3


# -- errors, each at its line ----------------------------------------------------------------

@pytest.mark.parametrize("line, needle", [
    ("*/0 * * * * /bin/x", "positive integer"),
    ("5/10 * * * * /bin/x", "needs a range"),
    ("7/2 * * * * /bin/x", "needs a range"),
    ("30-10 * * * * /bin/x", "reversed"),
    ("0 0 L * * /bin/x", "Quartz"),
    ("0 0 15W * * /bin/x", "Quartz"),
    ("0 0 * * 5#2 /bin/x", "Quartz"),
    ("0 0 ? * * /bin/x", "Quartz"),
    ("*/10 * * * * * /bin/x", "seconds"),
    ("60 * * * * /bin/x", "out of range 0-59"),
    ("0 24 * * * /bin/x", "out of range 0-23"),
    ("0 0 0 * * /bin/x", "out of range 1-31"),
    ("0 0 * 13 * /bin/x", "out of range 1-12"),
    ("0 0 * * 8 /bin/x", "out of range 0-7"),
    ("0 mon * * * /bin/x", "only in the month and day-of-week"),
    ("0 0 * foo * /bin/x", "not a month name"),
    ("0 0 * * monday /bin/x", "not a day name"),
    ("1,,2 * * * * /bin/x", "empty item"),
    ("*/x * * * * /bin/x", "positive integer"),
    ("@fortnightly /bin/x", "unknown keyword"),
    ("@DAILY /bin/x", "keywords are lowercase"),
    ("*/0000000000 * * * * /bin/x", "positive integer"),
    ("@every /bin/x", "bad duration"),
    ("* * * *", "needs 5 time fields"),
    ("* * * * 1-5", "a command must follow"),
    ("* * * * *", "a command must follow"),
])
def test_a_bad_schedule_is_reported_at_its_line(line, needle):
    number, message = the_error(f"# comment\nA=1\n{line}\n")
    assert number == 3
    assert needle in message, message


def test_the_system_format_rejects_a_missing_user_and_a_seconds_field():
    assert "a user and a command must follow" in the_error("* * * * *\n", system=True)[1]
    assert "seconds" in the_error("0 * * * * * root /bin/x\n", system=True)[1]


@pytest.mark.parametrize("block, line, needle", [
    ('timeuot = "1h"', 2, "did you mean 'timeout'"),
    ("retries = -1", 2, "0 or more"),
    ('retries = "3"', 2, "expected an integer"),
    ("retry_backoff = 0.5", 2, "1 or more"),
    ('timeout = "1 hour"', 2, "bad duration"),
    ('output_limit = "lots"', 2, "bad size"),
    ('timezone = "Mars/Olympus"', 2, "unknown time zone"),
    ('overlap = "sometimes"', 2, "is not one of"),
    ("success_codes = [0, 300]", 2, "not an exit code"),
    ("enabled = 1", 2, "true or false"),
    ('workdir = "srv"', 2, "absolute path"),
    ("env = { A = 1 }", 2, "expected a string"),
    ('timeout = ', 2, "invalid TOML"),
    ('timeout = 1h', 2, "invalid value for 'timeout': strings need quotes"),
    ('retries = two', 2, "invalid value for 'retries': write it as in retries = 3"),
    ('description = "unclosed', 2, "a string is not closed"),
    ('retries = 1\nretries = 2', 3, "'retries' is set twice"),
])
def test_a_bad_option_is_reported_at_its_line(block, line, needle):
    number, message = the_error(f"[job.x]\n{block}\n* * * * * /bin/x\n")
    assert number == line and needle in message, message


def test_an_environment_line_inside_a_block_gets_a_hint():
    number, message = the_error('[job.x]\ntimeout = "1h"\nMAILTO=ops\n* * * * * /bin/x\n')
    assert number == 3 and "above the block" in message and "env =" in message


def test_a_block_with_no_schedule_line_after_it_is_an_error():
    assert the_error("[job.x]\nretries = 1\n")[0] == 1
    assert the_error("[job.x]\nretries = 1\n[job.y]\n* * * * * /bin/y\n")[0] == 1


def test_duplicate_names_and_bad_names_are_errors():
    assert the_error("[job.a]\n* * * * * /bin/a\n[job.a]\n* * * * * /bin/b\n")[0] == 3
    assert "letters, digits" in the_error("[job.a b]\n* * * * * /bin/a\n")[1]
    assert "unknown block" in the_error("[jobs.a]\n* * * * * /bin/a\n")[1]


def test_after_must_name_jobs_that_exist_and_must_not_cycle():
    number, message = the_error("""\
        * * * * * /bin/backup
        [job.report]
        after = ["bakup"]
        @after /bin/report
        """)
    assert number == 3 and "did you mean 'backup'" in message
    found = errors("""\
        [job.a]
        after = ["b"]
        @after /bin/a
        [job.b]
        after = ["a"]
        @after /bin/b
        """)
    assert len(found) == 1 and "cycle" in found[0][1] and found[0][0] in (2, 5)


def test_after_needs_at_after_and_the_reverse():
    assert "needs the schedule line to be @after" in the_error(
        '* * * * * /bin/a\n[job.b]\nafter = ["a"]\n* * * * * /bin/b\n')[1]
    assert "no 'after' option" in the_error("@after /bin/x\n")[1]
    assert "[defaults]" in the_error('[defaults]\nafter = ["x"]\n* * * * * /bin/x\n')[1]


def test_a_bad_cron_tz_is_reported_at_its_line():
    assert the_error("CRON_TZ=Nowhere/Land\n* * * * * /bin/x\n")[0] == 1


def test_a_line_that_is_nothing_known_is_an_error():
    number, message = the_error("hello world\n")
    assert number == 1 and "not a schedule line" in message


def test_it_reports_every_error_not_just_the_first():
    found = errors("*/0 * * * * /bin/a\n[job.x]\nretries = -1\n* * * * * /bin/x\n61 * * * * /bin/b\n")
    assert [n for n, _ in found] == [1, 3, 5]


def test_crlf_line_endings_are_rejected_once_with_a_fix():
    with pytest.raises(JobsfileErrors) as info:
        parse_bytes(b"A=1\r\n* * * * * /bin/x\r\n", "jobs")
    (error,) = info.value.errors
    assert error.line == 1 and "CR LF" in error.message and "dos2unix" in error.message
    assert "1 more line" in error.message


def test_nul_bytes_and_invalid_utf8_are_reported_at_their_line():
    with pytest.raises(JobsfileErrors) as info:
        parse_bytes(b"* * * * * /bin/ok\n* * * * * /bin/\x00x\n* * * * * caf\xe9\n", "jobs")
    assert [(e.line, "NUL" in e.message or "UTF-8" in e.message) for e in info.value.errors] == [
        (2, True), (3, True)]


def test_a_comment_in_iso_8859_1_is_accepted_with_a_warning_as_cron_ignores_it():
    jf = parse_bytes(b"# Sicherung f\xfcr alles\n  # f\xfcr\n[job.a]\n# \xe9t\xe9\n@every 1h echo ok\n", "jobs")
    assert [j.name for j in jf.jobs] == ["a"]
    assert [w.line for w in jf.warnings] == [1, 2, 4]
    assert "0xfc at column 14" in jf.warnings[0].message and "iconv" in jf.warnings[0].message


def test_a_command_that_is_not_utf8_is_still_an_error():
    with pytest.raises(JobsfileErrors) as info:
        parse_bytes(b"# f\xfcr\n* * * * * echo f\xfcr\n", "jobs")
    assert [e.line for e in info.value.errors] == [2]


def test_a_huge_line_is_quoted_only_as_an_excerpt():
    number, message = the_error("x" * 100_000 + "\n")
    assert number == 1 and len(message) < 300


def test_errors_name_the_file_and_line():
    with pytest.raises(JobsfileErrors) as info:
        parse("\n\n*/0 * * * * /bin/x\n", "/etc/cronsup/jobs")
    assert str(info.value).startswith("/etc/cronsup/jobs:3: ")
