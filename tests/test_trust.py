"""What a root daemon trusts: the jobs file read once and checked on the open descriptor,
and the directories on the way to it. Real files, real `nobody`, real races."""

from __future__ import annotations

import os
import pwd
import signal
import stat
import time

import pytest

from cronsup import jobsfile, trust
from cronsup.jobsfile import JobsfileRefused

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
GOOD = "@every 1s echo good\n"
EVIL = "@every 1s id -u > /tmp/cronsup-evil-ran\n"


def as_nobody(body) -> int:
    """Fork a child that becomes nobody and runs `body()` until killed; return its pid."""
    nobody = pwd.getpwnam("nobody")
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            body()
        finally:
            os._exit(0)
    return pid


def stop(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


@pytest.fixture
def open_tmp(tmp_path):
    """tmp_path, which nobody may pass through (pytest makes them 0700), for one test.

    Its ancestors up to pytest-of-USER are opened for passing through (never listing) and
    left so: with pytest-xdist, another worker may be using them at the same time."""
    mode = stat.S_IMODE(tmp_path.stat().st_mode)
    for each in (tmp_path, *tmp_path.parents):
        each.chmod(0o711)
        if each.name.startswith("pytest-of-"):
            break
    yield tmp_path
    tmp_path.chmod(mode)


def test_a_plain_file_loads_without_root_checks(tmp_path):
    path = tmp_path / "jobs"
    path.write_text(GOOD)
    assert [j.command for j in jobsfile.load(str(path)).jobs] == ["echo good"]


def test_a_fifo_is_refused_at_once_instead_of_blocking_the_daemon(tmp_path):
    path = tmp_path / "jobs"
    os.mkfifo(path)
    with pytest.raises(JobsfileRefused, match="not a regular file"):
        jobsfile.load(str(path))


def test_a_directory_is_refused_as_not_a_regular_file(tmp_path):
    with pytest.raises(JobsfileRefused, match="it is a directory"):
        jobsfile.load(str(tmp_path))


@root_only
def test_as_root_a_symlink_is_refused_even_to_a_good_file(tmp_path):
    good = tmp_path / "good"
    good.write_text(GOOD)
    (tmp_path / "jobs").symlink_to(good)
    with pytest.raises(JobsfileRefused, match="it is a symbolic link"):
        jobsfile.load(str(tmp_path / "jobs"), as_root=True)
    assert jobsfile.load(str(tmp_path / "jobs")).jobs  # a user's daemon follows it


@root_only
@pytest.mark.parametrize("mode, owner, needle", [
    (0o664, 0, "group- or other-writable (mode 664)"),
    (0o644, 65534, "owned by uid 65534, not root"),
])
def test_as_root_the_owner_and_mode_of_the_file_are_checked(tmp_path, mode, owner, needle):
    path = tmp_path / "jobs"
    path.write_text(GOOD)
    path.chmod(mode)
    os.chown(path, owner, -1)
    with pytest.raises(JobsfileRefused) as caught:
        jobsfile.load(str(path), as_root=True)
    assert needle in str(caught.value) and str(caught.value).startswith(f"{path}: refused: ")


@root_only
def test_as_root_a_file_with_a_second_name_is_refused_as_cron_refuses_it(tmp_path):
    path = tmp_path / "jobs"
    path.write_text(GOOD)
    os.link(path, tmp_path / "elsewhere")
    with pytest.raises(JobsfileRefused, match="it has 2 hard links; a root daemon reads only a file "
                                              "with one name"):
        jobsfile.load(str(path), as_root=True)


@root_only
def test_as_root_the_path_opened_is_the_path_checked_even_with_dotdot_after_a_symlink(tmp_path):
    # The kernel reads link/../jobs as the jobs file beside the link's target, abspath as
    # the one beside the link: the one checked must be the one read.
    (tmp_path / "safe").mkdir()
    (tmp_path / "safe" / "jobs").write_text(GOOD)
    (tmp_path / "open" / "sub").mkdir(parents=True)
    (tmp_path / "open" / "jobs").write_text(EVIL)
    (tmp_path / "open").chmod(0o777)
    (tmp_path / "safe" / "link").symlink_to(tmp_path / "open" / "sub")
    loaded = jobsfile.load(str(tmp_path / "safe" / "link" / ".." / "jobs"), as_root=True)
    assert [j.command for j in loaded.jobs] == ["echo good"]


@root_only
@pytest.mark.parametrize("mode, owner, needle", [
    (0o777, 0, "is writable by other users (mode 777)"),
    (0o775, 0, "is writable by other users (mode 775)"),
    (0o755, 65534, "is owned by uid 65534, not root"),
])
def test_as_root_a_directory_others_can_write_is_refused(tmp_path, mode, owner, needle):
    directory = tmp_path / "etc"
    directory.mkdir()
    (directory / "jobs").write_text(GOOD)
    directory.chmod(mode)
    os.chown(directory, owner, -1)
    with pytest.raises(JobsfileRefused) as caught:
        jobsfile.load(str(directory / "jobs"), as_root=True)
    assert needle in str(caught.value) and f"the directory {directory} " in str(caught.value)


@root_only
def test_as_root_a_directory_above_that_others_can_write_is_refused_too(tmp_path):
    above = tmp_path / "srv"
    (above / "cronsup").mkdir(parents=True)
    (above / "cronsup" / "jobs").write_text(GOOD)
    above.chmod(0o777)  # nobody could rename cronsup/ away and put their own in its place
    with pytest.raises(JobsfileRefused, match=f"the directory {above} is writable by other users"):
        jobsfile.load(str(above / "cronsup" / "jobs"), as_root=True)


@root_only
def test_as_root_a_symlinked_directory_is_checked_where_it_leads(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (real / "jobs").write_text(GOOD)
    (tmp_path / "link").symlink_to(real)
    assert jobsfile.load(str(tmp_path / "link" / "jobs"), as_root=True).jobs
    real.chmod(0o777)
    with pytest.raises(JobsfileRefused, match=f"the directory {real} is writable"):
        jobsfile.load(str(tmp_path / "link" / "jobs"), as_root=True)


@root_only
def test_as_root_a_sticky_world_writable_directory_is_accepted_as_cron_accepts_its_spool(tmp_path):
    # Others may create names there but cannot rename or remove root's file: the file read
    # is root's own, as fstat on the open descriptor shows.
    spool = tmp_path / "spool"
    spool.mkdir()
    spool.chmod(0o1777)
    (spool / "jobs").write_text(GOOD)
    assert jobsfile.load(str(spool / "jobs"), as_root=True).jobs


def test_check_directory_rejects_a_sticky_directory_where_the_daemon_creates_files(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(0o1777)
    trust.check_directory(str(state), {os.geteuid()}, sticky_ok=True)
    with pytest.raises(trust.Untrusted, match=r"writable by other users \(mode 1777\)") as info:
        trust.check_directory(str(state), {os.geteuid()}, sticky_ok=False)
    # /tmp is meant to stay shared: the advice is a private directory, not chmod go-w /tmp.
    assert "install -d -m 0700" in str(info.value) and "chmod" not in str(info.value)
    state.chmod(0o777)
    with pytest.raises(trust.Untrusted, match="chmod go-w"):
        trust.check_directory(str(state), {os.geteuid()}, sticky_ok=False)


def test_check_directory_raises_only_untrusted_for_a_path_that_is_not_there(tmp_path):
    with pytest.raises(trust.Untrusted, match="No such file or directory"):
        trust.check_directory(str(tmp_path / "gone" / "deeper"), {os.geteuid()}, sticky_ok=False)
    (tmp_path / "file").write_text("")
    with pytest.raises(trust.Untrusted, match="is not a directory"):
        trust.check_directory(str(tmp_path / "file"), {os.geteuid()}, sticky_ok=False)


@root_only
def test_a_file_swapped_by_nobody_in_a_sticky_directory_is_never_read_as_roots(open_tmp):
    # The attack on stat-then-open: nobody flips `jobs` between a symlink to a root-owned
    # file (which stat() follows and approves) and nobody's own file. Opening once with
    # O_NOFOLLOW and checking the open file refuses both, however the race falls.
    spool = open_tmp / "spool"
    spool.mkdir()
    spool.chmod(0o1777)
    good = open_tmp / "good"
    good.write_text(GOOD)
    jobs = spool / "jobs"

    def flip() -> None:
        evil = spool / "evil"
        while True:
            for make in (lambda p: os.symlink(good, p), lambda p: p.write_text(EVIL)):
                try:
                    os.unlink(evil)
                except FileNotFoundError:
                    pass
                make(evil)
                os.rename(evil, jobs)

    pid = as_nobody(flip)
    seen = {"symlink": 0, "owner": 0}
    try:
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline or not all(seen.values()):
            assert time.monotonic() < deadline + 10, seen
            try:
                loaded = jobsfile.load(str(jobs), as_root=True)
            except JobsfileRefused as e:
                seen["symlink" if "symbolic link" in str(e) else "owner"] += 1
                assert "symbolic link" in str(e) or "owned by uid 65534" in str(e), e
            except FileNotFoundError:
                pass  # before nobody's first rename
            else:
                raise AssertionError(f"root loaded nobody's jobs: {loaded}")
    finally:
        stop(pid)


@root_only
def test_a_file_swapped_by_nobody_in_a_directory_nobody_can_write_is_refused_for_the_directory(open_tmp):
    # Without the sticky bit nobody can rename root's own file away and theirs in; the
    # directory itself is what is refused, whichever file is there at the moment.
    etc = open_tmp / "etc"
    etc.mkdir()
    etc.chmod(0o777)
    jobs = etc / "jobs"
    jobs.write_text(GOOD)
    (etc / "evil").write_text(EVIL)
    os.chown(etc / "evil", 65534, 65534)

    def swap() -> None:
        while True:
            os.rename(jobs, etc / "good")
            os.rename(etc / "evil", jobs)
            os.rename(jobs, etc / "evil")
            os.rename(etc / "good", jobs)

    pid = as_nobody(swap)
    try:
        for _ in range(2000):
            with pytest.raises(JobsfileRefused, match="is writable by other users"):
                jobsfile.load(str(jobs), as_root=True)
    finally:
        stop(pid)
    assert stat.S_IMODE(os.stat(etc).st_mode) == 0o777
