"""Cron's own files read as Debian's cron reads them (cronfiles.check_sources), against real
files in a --cron-root tree: names, owners, modes, errors, users, [cron] options, mail."""

import os
import pwd
from pathlib import Path

import pytest
from click.testing import CliRunner

from cronsup import cli, cronfiles, importer, jobsfile
from cronsup.cronfiles import Kind, Verdict

DATA = Path(__file__).parent / "data" / "debian"
NOBODY = pwd.getpwnam("nobody")

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="cron's ownership rules need root")


def put(root: Path, relative: str, text: str, mode: int = 0o644, owner: int = 0) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chown(path, owner, -1)
    path.chmod(mode)
    return path


def by_name(found: cronfiles.CronJobs) -> dict[str, cronfiles.Source]:
    return {os.path.basename(s.path): s for s in found.sources}


def test_cron_d_names_with_a_dot_are_ignored_and_listed_with_the_reason(tmp_path):
    put(tmp_path, "etc/cron.d/sysstat", "5 * * * * root /usr/lib/sysstat/sa1 1 1\n")
    put(tmp_path, "etc/cron.d/x.dpkg-old", "5 * * * * root true\n")
    put(tmp_path, "etc/cron.d/y.disabled", "5 * * * * root true\n")
    found = cronfiles.check_sources(str(tmp_path))
    sources = by_name(found)
    assert sources["sysstat"].verdict is Verdict.OK
    for name in ("x.dpkg-old", "y.disabled"):
        assert sources[name].verdict is Verdict.IGNORED
        assert repr(name) in sources[name].reason
    assert [j.name for j in found.jobs] == ["sa1"]
    assert not found.refused  # cron ignores them too: nothing is wrong


def test_a_group_writable_or_foreign_system_file_is_skipped_with_the_reason(tmp_path):
    put(tmp_path, "etc/cron.d/open", "5 * * * * root true\n", mode=0o664)
    put(tmp_path, "etc/cron.d/theirs", "5 * * * * root true\n", owner=NOBODY.pw_uid)
    put(tmp_path, "etc/crontab", "5 * * * * root echo from-crontab\n")
    sources = by_name(cronfiles.check_sources(str(tmp_path)))
    assert sources["open"].verdict is Verdict.SKIPPED
    assert "group- or other-writable (mode 0664)" in sources["open"].reason
    assert sources["theirs"].verdict is Verdict.SKIPPED
    assert "not root" in sources["theirs"].reason and "nobody" in sources["theirs"].reason
    assert sources["crontab"].verdict is Verdict.OK and sources["crontab"].kind is Kind.SYSTEM


def test_a_broken_file_is_skipped_whole_with_its_errors_while_the_file_beside_it_is_read(tmp_path):
    put(tmp_path, "etc/cron.d/good", "MAILTO=\"\"\n*/5 * * * * root echo good\n")
    bad = put(tmp_path, "etc/cron.d/bad", "5 * * * * root echo fine\n61 * * * * root echo bad\n"
                                          "7 * * * * nosuchuser echo who\n")
    found = cronfiles.check_sources(str(tmp_path))
    sources = by_name(found)
    assert sources["bad"].verdict is Verdict.SKIPPED
    assert "cron ignores the whole file" in sources["bad"].reason
    assert sources["bad"].errors and sources["bad"].errors[0].startswith(f"{bad}:2: ")
    assert sources["bad"].jobs == ()
    assert [j.command for j in found.jobs] == ["echo good"]


def test_an_unknown_user_in_the_user_field_skips_the_file(tmp_path):
    path = put(tmp_path, "etc/cron.d/who", "7 * * * * nosuchuser echo who\n")
    source = by_name(cronfiles.check_sources(str(tmp_path)))["who"]
    assert source.verdict is Verdict.SKIPPED
    assert source.errors == (f"{path}:1: no user 'nosuchuser' on this host (the user field)",)


def test_cron_files_hold_no_option_blocks_and_no_every(tmp_path):
    put(tmp_path, "etc/cron.d/blocks", "[defaults]\ntimeout = \"1m\"\n5 * * * * root true\n")
    put(tmp_path, "etc/cron.d/every", "@every 5s root true\n")
    sources = by_name(cronfiles.check_sources(str(tmp_path)))
    assert "hold no option blocks" in sources["blocks"].errors[0]
    assert "@every is cronsup's, not cron's" in sources["every"].errors[0]


def test_a_user_crontab_runs_as_its_user_and_its_jobs_are_named_after_them(tmp_path):
    put(tmp_path, "var/spool/cron/crontabs/nobody", "0 2 * * * /usr/local/bin/backup.sh\n",
        mode=0o600, owner=NOBODY.pw_uid)
    found = cronfiles.check_sources(str(tmp_path))
    (job,) = found.jobs
    assert (job.name, job.user, job.mailto) == ("nobody-backup", "nobody", "nobody")
    assert found.origins["nobody-backup"] == f"{tmp_path}/var/spool/cron/crontabs/nobody:1"


def test_a_user_crontab_owned_by_someone_else_or_readable_by_others_is_refused(tmp_path):
    # root's name on a file nobody owns: running it would give nobody root.
    put(tmp_path, "var/spool/cron/crontabs/root", "* * * * * id\n", mode=0o600, owner=NOBODY.pw_uid)
    put(tmp_path, "var/spool/cron/crontabs/nobody", "* * * * * id\n", mode=0o600, owner=0)
    put(tmp_path, "var/spool/cron/crontabs/daemon", "* * * * * id\n", mode=0o644,
        owner=pwd.getpwnam("daemon").pw_uid)
    put(tmp_path, "var/spool/cron/crontabs/ghost", "* * * * * id\n", mode=0o600)
    found = cronfiles.check_sources(str(tmp_path))
    sources = by_name(found)
    assert "not by root" in sources["root"].reason and "WRONG FILE OWNER" in sources["root"].reason
    assert "not by nobody" in sources["nobody"].reason
    assert "mode 0644" in sources["daemon"].reason
    assert "no user 'ghost'" in sources["ghost"].reason
    assert all(s.verdict is Verdict.SKIPPED for s in found.sources) and found.jobs == ()


def test_a_symlink_in_cron_d_is_followed_when_root_owns_it_but_never_in_the_spool(tmp_path):
    target = put(tmp_path, "opt/job", "5 * * * * root echo linked\n")
    (tmp_path / "etc/cron.d").mkdir(parents=True)
    os.symlink(target, tmp_path / "etc/cron.d/linked")
    spool = tmp_path / "var/spool/cron/crontabs"
    spool.mkdir(parents=True)
    os.symlink(target, spool / "root")
    sources = by_name(cronfiles.check_sources(str(tmp_path)))
    assert sources["linked"].verdict is Verdict.OK
    assert sources["root"].verdict is Verdict.SKIPPED and "symbolic link" in sources["root"].reason


def test_crontab_temp_files_in_the_spool_are_ignored(tmp_path):
    put(tmp_path, "var/spool/cron/crontabs/tmp.Xa81Qz", "* * * * * id\n", mode=0o600)
    source = by_name(cronfiles.check_sources(str(tmp_path)))["tmp.Xa81Qz"]
    assert source.verdict is Verdict.IGNORED and "tmp.*" in source.reason


def test_the_cron_block_gives_options_and_the_files_own_settings_win(tmp_path):
    put(tmp_path, "etc/cron.d/plain", "5 * * * * root echo plain\n")
    put(tmp_path, "etc/cron.d/own", "MAILTO=ops@example.org\nSHELL=/bin/bash\nCRON_TZ=Europe/Paris\n"
                                   "5 * * * * root echo own\n")
    jf = jobsfile.parse('[cron]\ntimeout = "10m"\noverlap = "queue"\nshell = "/bin/dash"\n'
                       'timezone = "UTC"\nenv = { LANG = "C", SHELL = "/bin/zsh" }\n', "jobs")
    found = cronfiles.check_sources(str(tmp_path), jf.cron_options)
    plain, own = (next(j for j in found.jobs if j.command == f"echo {w}") for w in ("plain", "own"))
    assert (plain.timeout, str(plain.overlap), plain.shell, plain.timezone) == (600.0, "queue", "/bin/dash", "UTC")
    assert plain.env["LANG"] == "C"
    assert (own.shell, own.timezone, own.mailto) == ("/bin/bash", "Europe/Paris", "ops@example.org")
    assert own.env["SHELL"] == "/bin/bash" and own.timeout == 600.0


def test_cron_mails_the_owner_when_the_file_sets_no_mailto_and_no_one_when_it_is_empty(tmp_path):
    put(tmp_path, "etc/cron.d/unset", "5 * * * * www-data echo unset\n")
    put(tmp_path, "etc/cron.d/empty", "MAILTO=\"\"\n5 * * * * root echo empty\n")
    found = cronfiles.check_sources(str(tmp_path))
    mail = {j.command: j.mailto for j in found.jobs}
    assert mail == {"echo unset": "www-data", "echo empty": ""}
    with_block = cronfiles.check_sources(str(tmp_path), jobsfile.parse('[cron]\nmailto = "ops"\n').cron_options)
    assert {j.command: j.mailto for j in with_block.jobs} == {"echo unset": "ops", "echo empty": ""}


def test_the_cron_block_refuses_user_and_after():
    with pytest.raises(jobsfile.JobsfileErrors) as e:
        jobsfile.parse('[cron]\nuser = "nobody"\n', "jobs")
    assert "jobs:2: 'user' cannot be set in [cron]" in str(e.value)


def test_lines_guarded_by_run_systemd_system_are_reported(tmp_path):
    for name in ("anacron", "e2scrub_all", "certbot", "sysstat"):
        put(tmp_path, f"etc/cron.d/{name}", (DATA / "system" / f"{name}--{_package(name)}").read_text())
    sources = by_name(cronfiles.check_sources(str(tmp_path)))
    assert sources["anacron"].guarded == (6,)
    assert sources["e2scrub_all"].guarded == (1, 2)
    assert sources["certbot"].guarded == (17,)
    assert sources["sysstat"].guarded == ()


def _package(name: str) -> str:
    return next(p.name.split("--")[1] for p in (DATA / "system").iterdir() if p.name.startswith(name + "--"))


def test_jobs_file_names_win_a_clash_and_the_cron_job_gets_a_suffix(tmp_path):
    put(tmp_path, "etc/crontab", "17 * * * * root cd / && run-parts --report /etc/cron.hourly\n")
    found = cronfiles.check_sources(str(tmp_path), taken=["cron-hourly"])
    (job,) = found.jobs
    assert job.name.startswith("cron-hourly-") and job.name != "cron-hourly"
    # The suffix comes from the line's own text: the same name at every rescan.
    assert cronfiles.check_sources(str(tmp_path), taken=["cron-hourly"]).jobs[0].name == job.name


def test_import_and_cron_give_the_same_jobs_for_debians_packaged_crontabs(tmp_path):
    sources = []
    for path in sorted((DATA / "system").iterdir()):
        name, _ = path.name.split("--")
        relative = "etc/crontab" if name == "crontab" else f"etc/cron.d/{name}"
        sources.append((str(put(tmp_path, relative, path.read_text())), path.read_text()))
    sources.sort(key=lambda s: (not s[0].endswith("etc/crontab"), s[0]))  # the order cron reads
    # The packages' users (munin, logcheck...) need not exist on the machine running the tests.
    users = lambda name: NOBODY  # noqa: E731
    found = cronfiles.check_sources(str(tmp_path), lookup_user=users)
    assert all(s.verdict is Verdict.OK for s in found.sources), [s.reason for s in found.sources]
    imported = jobsfile.parse(importer.convert(sources, system=True), "imported")
    assert len(imported.jobs) == len(found.jobs) == 19
    fields = lambda j: (j.name, j.schedule.text, j.command, j.stdin, j.user, j.mailto,  # noqa: E731
                        j.shell, j.timezone, j.env)
    assert [fields(j) for j in found.jobs] == [fields(j) for j in imported.jobs]
    assert {"cron-daily", "sa1", "certbot"} <= {j.name for j in found.jobs}


def test_check_cron_lists_every_source_and_fails_when_one_would_be_skipped(tmp_path):
    put(tmp_path, "etc/cron.d/good", "5 * * * * root echo good\n")
    put(tmp_path, "etc/cron.d/x.dpkg-old", "5 * * * * root echo old\n")
    args = ["check", "--cron", "--cron-root", str(tmp_path), "--jobs", str(tmp_path / "none")]
    result = CliRunner().invoke(cli.main, args)
    assert result.exit_code == 0, result.output
    assert f"{tmp_path}/etc/cron.d/good: 1 job, no errors" in result.output
    assert f"{tmp_path}/etc/cron.d/x.dpkg-old: ignored: cron ignores it" in result.output
    put(tmp_path, "etc/cron.d/open", "5 * * * * root echo open\n", mode=0o666)
    result = CliRunner().invoke(cli.main, args)
    assert result.exit_code == 1
    assert f"{tmp_path}/etc/cron.d/open: SKIPPED: group- or other-writable" in result.output


def test_cron_root_needs_cron():
    result = CliRunner().invoke(cli.main, ["check", "--cron-root", "/tmp"])
    assert result.exit_code == 2 and "--cron-root needs --cron" in result.output
