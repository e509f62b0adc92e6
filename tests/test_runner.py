"""The runner with real child processes and real signals. No fixed sleeps: every wait is a
select() on the output pipe or a pidfd, bounded by a deadline."""

from __future__ import annotations

import os
import pwd
import resource
import select
import subprocess
import signal
import sys
import time
import tracemalloc

import psutil
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import wait_until
from test_trust import open_tmp  # noqa: F401 - a fixture
from cronsup import runner
from cronsup.model import Every, JobSpec
from cronsup.runner import Child, Exit, OutputBuffer, SpawnError

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="switching users needs root")


def make_job(command: str, **options) -> JobSpec:
    return JobSpec(name="t", schedule=Every("@every 1m", 60.0), command=command, line=1,
                   **options)


def wait_exit(child: Child, timeout: float = 10.0) -> Exit:
    """Read the job's output while it runs; return its Exit once it is reaped (even if a
    grandchild still holds the pipe open)."""
    pidfd = os.pidfd_open(child.pid)  # readable once the process has exited
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                runner.signal_tree(child, signal.SIGKILL)
                raise AssertionError(f"job {child.pid} still running after {timeout}s")
            fds = [pidfd] if child.fd is None else [pidfd, child.fd]
            ready, _, _ = select.select(fds, [], [], left)
            if child.fd is not None and child.fd in ready:
                runner.read_output(child)
            if pidfd in ready:
                exits = runner.reap([child.pid])
                if exits:
                    return exits[0]
    finally:
        os.close(pidfd)


def run_to_end(child: Child, timeout: float = 10.0) -> Exit:
    """wait_exit, then read the pipe to EOF."""
    deadline = time.monotonic() + timeout
    exit = wait_exit(child, timeout)
    while child.fd is not None:
        left = deadline - time.monotonic()
        assert left > 0, "the job's pipe stayed open"
        select.select([child.fd], [], [], left)
        runner.read_output(child)
    return exit


def run(command: str, **options) -> tuple[Exit, str]:
    child = runner.spawn(make_job(command, **options), run_id=1)
    exit = run_to_end(child)
    return exit, child.output.snapshot()[0].decode()


def wait_for_output(child: Child, text: str, timeout: float = 10.0) -> None:
    """Read the job's output until `text` appears in it."""
    deadline = time.monotonic() + timeout
    while text.encode() not in child.output.snapshot()[0]:
        left = deadline - time.monotonic()
        assert left > 0 and child.fd is not None, f"no {text!r} in {child.output.snapshot()}"
        select.select([child.fd], [], [], left)
        runner.read_output(child)


def wait_gone(pids: list[int], timeout: float = 10.0) -> None:
    """Wait until none of `pids` is a live process (gone, or a zombie left to its parent)."""
    deadline = time.monotonic() + timeout
    while True:
        alive = [pid for pid in pids if _alive(pid)]
        if not alive:
            return
        assert time.monotonic() < deadline, f"still alive: {alive}"
        time.sleep(0.01)  # polling another parent's orphans: nothing to select on


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def group_members(pgid: int) -> list[int]:
    members = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                members.append(proc.pid)
        except (ProcessLookupError, psutil.NoSuchProcess):
            pass
    return members


@pytest.fixture
def leftovers():
    """Pids to SIGKILL after the test, whatever happened."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# --- how a run ends ----------------------------------------------------------------------


def test_it_reports_the_exit_code():
    exit, _ = run("exit 3")
    assert (exit.exit_code, exit.signal) == (3, None)


def test_it_reports_the_signal_that_ended_the_job():
    exit, _ = run("kill -TERM $$")
    assert (exit.exit_code, exit.signal) == (None, signal.SIGTERM)


def test_it_measures_the_cpu_time_of_a_busy_loop():
    exit, _ = run("i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done")
    assert exit.exit_code == 0
    assert exit.cpu_s > 0.05


def test_it_reports_peak_memory_in_bytes_including_the_jobs_children():
    # Linux counts the spawning process's peak in a vforked child's ru_maxrss, so the job
    # must use clearly more than this test process to be seen.
    size = 400 * 1024 * 1024
    exit, _ = run(f"{sys.executable} -c 'b = b\"x\" * {size}'")
    assert exit.exit_code == 0
    assert size <= exit.max_rss < 2 * size


def test_the_exit_status_is_left_for_reap_after_the_popen_object_is_collected():
    import gc

    child = runner.spawn(make_job("exit 7"), run_id=1)
    gc.collect()  # Popen.__del__ would waitpid() and steal the status
    assert run_to_end(child).exit_code == 7


def test_reap_skips_pids_that_are_not_its_children():
    assert runner.reap([os.getpid(), 1, 2**22 + 1]) == []


def test_a_pid_that_does_not_exist_has_no_start_time():
    assert runner.start_ticks(2**22 + 1) is None


def test_reap_returns_nothing_for_a_job_that_still_runs(leftovers):
    child = runner.spawn(make_job("echo up; exec sleep 300"), run_id=1)
    leftovers.append(child.pid)
    wait_for_output(child, "up")
    assert runner.reap([child.pid]) == []
    runner.signal_tree(child, signal.SIGKILL)
    assert wait_exit(child).signal == signal.SIGKILL


def test_reap_any_collects_every_exited_child():
    children = [runner.spawn(make_job(f"exit {code}"), run_id=code) for code in (4, 5)]
    for child in children:
        pidfd = os.pidfd_open(child.pid)
        select.select([pidfd], [], [], 10)
        os.close(pidfd)
    exits = {e.pid: e.exit_code for e in runner.reap_any()}
    assert {c.pid: exits.get(c.pid) for c in children} == {children[0].pid: 4,
                                                            children[1].pid: 5}
    assert runner.reap_any() == []
    for child in children:
        runner.close_output(child)


# --- what a job starts with --------------------------------------------------------------


def test_the_job_gets_a_clean_environment(monkeypatch):
    monkeypatch.setenv("SECRET", "hunter2")
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
    job_env = (("MAILTO", ""), ("FOO", "1"), ("PATH", "/opt/bin:/usr/bin:/bin"), ("FOO", "2"))
    # the shell's own initial environment, exactly as exec'd (`env` would show the shell's)
    _, out = run("tr '\\0' '\\n' < /proc/$$/environ; :", environment=job_env)
    home = pwd.getpwuid(os.geteuid()).pw_dir
    name = pwd.getpwuid(os.geteuid()).pw_name
    assert dict(line.split("=", 1) for line in out.splitlines()) == {
        "SHELL": "/bin/sh", "PATH": "/opt/bin:/usr/bin:/bin", "HOME": home,
        "LOGNAME": name, "USER": name, "MAILTO": "", "FOO": "2", "CRONSUP_RUN_ID": "1",
    }


def test_environment_lines_override_home_and_shell_but_not_the_user_name():
    pw = pwd.getpwnam("nobody")
    job = make_job("true", shell="/bin/bash",
                   environment=(("HOME", "/srv"), ("LOGNAME", "root"), ("USER", "root")))
    assert runner.build_environment(job, pw) == {
        "SHELL": "/bin/bash", "PATH": "/usr/bin:/bin", "HOME": "/srv",
        "LOGNAME": "nobody", "USER": "nobody",
    }


def test_the_job_has_only_stdin_stdout_and_stderr_open():
    leak = os.open("/dev/null", os.O_RDONLY)  # inheritable in the parent: must not leak
    os.set_inheritable(leak, True)
    try:
        _, out = run("ls -1 /proc/$$/fd; :")
    finally:
        os.close(leak)
    assert out.split() == ["0", "1", "2"]


def test_stdout_and_stderr_are_one_pipe_and_stdin_is_dev_null():
    _, out = run("readlink /proc/$$/fd/0 /proc/$$/fd/1 /proc/$$/fd/2; echo out; echo err >&2")
    stdin, stdout, stderr, *rest = out.splitlines()
    assert stdin == "/dev/null"
    assert stdout == stderr and stdout.startswith("pipe:")
    assert rest == ["out", "err"]


def test_the_job_runs_with_umask_022():
    assert run("umask")[1] == "0022\n"


def test_the_job_has_no_blocked_or_ignored_signals():
    # /proc/self: grep's own masks, inherited through the shell. The shell's own status
    # is no witness: dash blocks every signal for a moment around each fork.
    _, out = run("grep -E '^Sig(Blk|Ign)' /proc/self/status")
    masks = dict(line.split(":") for line in out.splitlines())
    assert int(masks["SigBlk"], 16) == 0
    assert not int(masks["SigIgn"], 16) & (1 << (signal.SIGPIPE - 1))  # SIGPIPE default
    # glibc keeps signals 32 and 33 for itself; no process can change them, and GNU make
    # hands them on ignored. Every signal a program may use must be at its default.
    reserved = sum(1 << (n - 1) for n in range(1, 65) if n not in signal.valid_signals())
    assert int(masks["SigIgn"], 16) & ~reserved == 0


def test_the_job_leads_its_own_session_and_process_group():
    child = runner.spawn(make_job("echo $$; ps -o sid=,pgid= -p $$"), run_id=9)
    assert child.start_ticks == runner.start_ticks(child.pid) > 0  # unreaped: still there
    assert child.create_time == psutil.Process(child.pid).create_time()
    run_to_end(child)
    pid, ids = child.output.snapshot()[0].decode().splitlines()
    assert int(pid) == child.pid
    assert [int(x) for x in ids.split()] == [child.pid, child.pid]
    assert child.run_id == 9
    assert child.started_at == pytest.approx(time.time(), abs=30)


def test_the_percent_text_is_the_jobs_standard_input():
    assert run("cat", stdin="line 1\nline 2\n")[1] == "line 1\nline 2\n"


def test_a_big_standard_input_does_not_block_the_spawn():
    text = "x" * (4 * 1024 * 1024)  # far more than a pipe would hold
    started = time.monotonic()
    child = runner.spawn(make_job("wc -c", stdin=text), run_id=1)
    assert time.monotonic() - started < 2
    run_to_end(child)
    assert child.output.snapshot()[0].split() == [b"4194304"]


def test_the_job_runs_in_its_workdir(tmp_path):
    assert run("pwd", workdir=str(tmp_path))[1] == f"{tmp_path}\n"


def test_without_a_workdir_the_job_runs_in_its_users_home():
    home = pwd.getpwuid(os.geteuid()).pw_dir
    expected = home if os.path.isdir(home) else "/"
    assert run("pwd")[1] == f"{expected}\n"


def test_a_missing_workdir_is_a_spawn_error(tmp_path):
    with pytest.raises(SpawnError) as caught:
        runner.spawn(make_job("true", workdir=f"{tmp_path}/gone"), run_id=1)
    assert caught.value.reason == f"workdir {tmp_path}/gone: No such file or directory"


def test_a_workdir_that_is_a_file_is_a_spawn_error(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(SpawnError, match="Not a directory"):
        runner.spawn(make_job("true", workdir=str(tmp_path / "f")), run_id=1)


def test_a_missing_shell_is_a_spawn_error(tmp_path):
    with pytest.raises(SpawnError) as caught:
        runner.spawn(make_job("true", shell=f"{tmp_path}/nosh"), run_id=1)
    assert caught.value.reason == f"shell {tmp_path}/nosh: No such file or directory"


def test_a_shell_that_is_not_executable_is_a_spawn_error(tmp_path):
    shell = tmp_path / "sh"
    shell.write_text("#!/bin/sh\n")
    with pytest.raises(SpawnError) as caught:
        runner.spawn(make_job("true", shell=str(shell)), run_id=1)
    assert caught.value.reason == f"shell {shell}: Permission denied"


def test_a_failed_spawn_leaves_no_file_descriptor_open(tmp_path):
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(20):
        with pytest.raises(SpawnError):
            runner.spawn(make_job("true", shell=f"{tmp_path}/nosh", stdin="x"), run_id=1)
    assert len(os.listdir("/proc/self/fd")) == before


def test_running_out_of_file_descriptors_is_a_spawn_error_and_leaks_none():
    import resource

    before = sorted(os.listdir("/proc/self/fd"))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (len(before) + 16, hard))
    filler = []
    try:
        while True:
            try:
                filler.append(os.open("/dev/null", os.O_RDONLY))
            except OSError:
                break
        os.close(filler.pop())  # room for the memfd, not for the pipe
        with pytest.raises(SpawnError) as caught:
            runner.spawn(make_job("true", stdin="x"), run_id=1)
    finally:
        for fd in filler:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert caught.value.reason == "cannot start /bin/sh: Too many open files"
    assert sorted(os.listdir("/proc/self/fd")) == before


def test_an_unknown_user_is_a_spawn_error():
    with pytest.raises(SpawnError) as caught:
        runner.spawn(make_job("true", user="no-such-user-cronsup"), run_id=1)
    assert caught.value.reason == "user 'no-such-user-cronsup': no such user"


def test_a_daemon_that_is_not_root_cannot_switch_users(monkeypatch):
    nobody = pwd.getpwnam("nobody")
    monkeypatch.setattr(os, "geteuid", lambda: nobody.pw_uid)
    with pytest.raises(SpawnError) as caught:
        runner.spawn(make_job("true", user="root"), run_id=1)
    assert caught.value.reason == (
        "user 'root': the daemon runs as 'nobody' and can switch users only as root")


@needs_root
def test_a_job_for_nobody_runs_as_nobody_with_nobodys_groups():
    nobody = pwd.getpwnam("nobody")
    groups = sorted(os.getgrouplist("nobody", nobody.pw_gid))
    _, out = run("id -u; id -g; id -G; echo $HOME $LOGNAME; pwd", user="nobody")
    uid, gid, all_groups, env, cwd = out.splitlines()
    assert (int(uid), int(gid)) == (nobody.pw_uid, nobody.pw_gid)
    assert sorted(int(g) for g in all_groups.split()) == groups
    assert env == f"{nobody.pw_dir} nobody"
    assert cwd == "/"  # nobody's home, /nonexistent, does not exist


@needs_root
def test_a_workdir_nobody_may_not_enter_is_a_spawn_error(tmp_path):
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    with pytest.raises(SpawnError, match="Permission denied"):
        runner.spawn(make_job("true", user="nobody", workdir=str(private)), run_id=1)


@needs_root
def test_a_nobody_job_enters_its_workdir_after_dropping_root_so_a_root_only_directory_stays_shut(open_tmp):
    # Inside a 0700 root directory, a directory anyone may list: entering it as root and
    # then dropping root would leave the job inside, reading what its user never could.
    private = open_tmp / "private"
    (private / "inner").mkdir(parents=True)
    private.chmod(0o700)
    (private / "inner").chmod(0o755)
    (private / "inner" / "secret").write_text("the secret\n")
    with pytest.raises(SpawnError) as caught:
        runner.spawn(make_job("cat secret", user="nobody", workdir=str(private / "inner")), run_id=1)
    assert caught.value.reason == f"workdir {private}/inner: Permission denied (as user 'nobody')"


@needs_root
def test_a_nobody_job_runs_in_a_workdir_it_may_enter(open_tmp):
    public = open_tmp / "public"
    public.mkdir()
    assert run("pwd; id -u", user="nobody", workdir=str(public))[1] == f"{public}\n65534\n"


@needs_root
@pytest.mark.parametrize("make, reason", [
    (lambda p: p.write_text(""), "Not a directory"),
    (lambda p: None, "No such file or directory"),
])
def test_a_workdir_that_nobody_cannot_enter_for_any_reason_is_a_clear_spawn_error(open_tmp, make, reason):
    path = open_tmp / "wd"
    make(path)
    with pytest.raises(SpawnError) as caught:
        runner.spawn(make_job("true", user="nobody", workdir=str(path)), run_id=1)
    assert caught.value.reason == f"workdir {path}: {reason} (as user 'nobody')"


@pytest.mark.parametrize("options, needle", [
    ({"workdir": "/tmp/\0x"}, "workdir '/tmp/\\x00x' contains a NUL character"),
    ({"shell": "/bin/\0sh"}, "shell '/bin/\\x00sh' contains a NUL character"),
    ({"environment": (("A=B", "1"),)}, "environment variable 'A=B': not a valid name or value"),
    ({"environment": (("A", "x\0"),)}, "environment variable 'A': not a valid name or value"),
    ({"user": "no\0body"}, "user 'no\\x00body' contains a NUL character"),
    ({"shell": "relative-shell"}, "shell relative-shell: No such file or directory"),
    ({"workdir": "/" + "x" * 5000}, "File name too long"),
])
def test_a_value_exec_cannot_carry_is_a_spawn_error_never_another_exception(options, needle):
    # `check` refuses all of these; a JobSpec made any other way must not crash the daemon.
    with pytest.raises(SpawnError) as caught:
        runner.spawn(make_job("true", **options), run_id=1)
    assert needle in caught.value.reason, caught.value.reason


@pytest.mark.parametrize("user", [None, pytest.param("nobody", marks=needs_root)])
def test_a_workdir_symlink_flipped_while_jobs_start_gives_only_runs_or_spawn_errors(open_tmp, user):
    import threading

    (open_tmp / "dir").mkdir()
    (open_tmp / "file").write_text("")
    link = open_tmp / "wd"
    link.symlink_to(open_tmp / "dir")
    done = threading.Event()

    def flip() -> None:
        i = 0
        while not done.is_set():
            new = open_tmp / "wd.new"
            if new.is_symlink():
                new.unlink()
            new.symlink_to(open_tmp / ("dir", "file", "gone")[i % 3])
            os.rename(new, link)
            i += 1

    flipper = threading.Thread(target=flip)
    flipper.start()
    outcomes = {"ran": 0, "error": 0}
    try:
        for _ in range(150):
            try:
                child = runner.spawn(make_job("true", user=user, workdir=str(link)), run_id=1)
            except SpawnError as e:
                assert e.reason.startswith(f"workdir {link}: "), e.reason
                outcomes["error"] += 1
            else:
                assert run_to_end(child).exit_code == 0
                outcomes["ran"] += 1
    finally:
        done.set()
        flipper.join()
    assert outcomes["ran"] and outcomes["error"], outcomes


# --- output ---------------------------------------------------------------------------


def test_a_flood_of_output_keeps_head_and_tail_in_bounded_memory():
    limit = 64 * 1024
    child = runner.spawn(make_job("yes | head -c 200000000", output_limit=limit), run_id=1)
    rss_before = psutil.Process().memory_info().rss
    tracemalloc.start()
    try:
        exit = run_to_end(child, timeout=25)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert exit.exit_code == 0  # never blocked: it wrote everything and ended
    assert peak < 1024 * 1024
    assert psutil.Process().memory_info().rss - rss_before < 16 * 1024 * 1024
    kept, truncated = child.output.snapshot()
    assert truncated and child.output.total == 200_000_000
    head, tail = kept.split(b"\n[... %d bytes cut ...]\n" % (200_000_000 - limit))
    assert head == b"y\n" * (limit // 4)
    assert tail == b"y\n" * (limit // 4)  # 200,000,000 is even: the tail ends on "y\n"


def test_output_is_kept_whole_below_the_limit():
    buf = OutputBuffer(10)
    buf.feed(b"0123456789")
    assert buf.snapshot() == (b"0123456789", False)
    assert (buf.total, buf.changed) == (10, True)


def test_output_past_the_limit_keeps_the_first_and_last_halves():
    buf = OutputBuffer(10)
    for ch in b"abcdefghijklmnop":
        buf.feed(bytes([ch]))
    assert buf.snapshot() == (b"abcde\n[... 6 bytes cut ...]\nlmnop", True)


def test_an_odd_limit_gives_the_extra_byte_to_the_tail():
    buf = OutputBuffer(5)
    buf.feed(b"0123456789")
    assert buf.snapshot() == (b"01\n[... 5 bytes cut ...]\n789", True)


def test_a_zero_limit_keeps_nothing_but_counts_everything():
    buf = OutputBuffer(0)
    buf.feed(b"abc")
    assert buf.snapshot() == (b"\n[... 3 bytes cut ...]\n", True)
    assert buf.total == 3


def test_feeding_nothing_changes_nothing():
    buf = OutputBuffer(4)
    buf.feed(b"")
    assert (buf.snapshot(), buf.total, buf.changed) == ((b"", False), 0, False)


@given(st.integers(0, 40), st.lists(st.binary(max_size=30), max_size=20))
def test_output_kept_does_not_depend_on_how_it_was_chunked(limit, chunks):
    buf = OutputBuffer(limit)
    for chunk in chunks:
        buf.feed(chunk)
        assert len(buf._tail) <= 2 * limit + 30  # bounded memory at every step
    data = b"".join(chunks)
    head, tail = limit // 2, limit - limit // 2
    if len(data) <= limit:
        assert buf.snapshot() == (data, False)
    else:
        cut = len(data) - limit
        expected = data[:head] + b"\n[... %d bytes cut ...]\n" % cut + data[len(data) - tail:]
        assert buf.snapshot() == (expected, True)
    assert buf.total == len(data)


def test_the_read_end_is_non_blocking_and_closed_on_exec(leftovers):
    import fcntl

    child = runner.spawn(make_job("echo up; exec sleep 300"), run_id=1)
    leftovers.append(child.pid)
    assert not os.get_blocking(child.fd)
    assert fcntl.fcntl(child.fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
    wait_for_output(child, "up")
    assert runner.read_output(child) is True  # nothing more yet: returns, does not block
    runner.signal_tree(child, signal.SIGKILL)
    run_to_end(child)
    assert runner.read_output(child) is False and child.fd is None


def test_a_grandchild_holding_the_pipe_does_not_hold_up_the_exit(leftovers):
    child = runner.spawn(make_job("sleep 30 & echo $!; echo hi"), run_id=1)
    started = time.monotonic()
    exit = wait_exit(child)
    assert exit.exit_code == 0 and time.monotonic() - started < 5
    wait_for_output(child, "hi")
    leftovers.append(int(child.output.snapshot()[0].split()[0]))
    started = time.monotonic()
    runner.close_output(child)
    assert time.monotonic() - started < 1
    assert child.fd is None
    assert child.output.snapshot()[0].endswith(b"hi\n")


# --- killing the tree ---------------------------------------------------------------------


def test_term_kills_the_shell_and_its_background_children(leftovers):
    child = runner.spawn(make_job("sleep 300 & echo started; wait"), run_id=1)
    leftovers.append(child.pid)
    wait_for_output(child, "started")
    sleeper = [p.pid for p in psutil.Process(child.pid).children()]
    assert len(sleeper) == 1
    leftovers.extend(sleeper)
    runner.signal_tree(child, signal.SIGTERM)
    assert run_to_end(child).signal == signal.SIGTERM
    wait_gone(sleeper)
    assert group_members(child.pid) == []


def test_a_job_that_ignores_term_survives_it_and_dies_on_kill(leftovers):
    child = runner.spawn(
        make_job("trap '' TERM; while :; do echo tick; sleep 0.05; done"), run_id=1)
    leftovers.append(child.pid)
    wait_for_output(child, "tick")
    runner.signal_tree(child, signal.SIGTERM)
    seen = child.output.total
    deadline = time.monotonic() + 10
    while child.output.total == seen:  # it goes on ticking after TERM
        assert time.monotonic() < deadline
        select.select([child.fd], [], [], 1)
        runner.read_output(child)
    assert runner.reap([child.pid]) == []
    runner.signal_tree(child, signal.SIGKILL)
    assert run_to_end(child).signal == signal.SIGKILL
    assert group_members(child.pid) == []


def test_a_grandchild_in_its_own_session_is_killed_too(leftovers):
    child = runner.spawn(make_job("setsid sleep 300 & echo started; wait"), run_id=1)
    leftovers.append(child.pid)
    wait_for_output(child, "started")
    deadline = time.monotonic() + 10
    while True:  # until setsid has turned into a sleep in a session of its own
        kids = psutil.Process(child.pid).children()
        if kids and kids[0].name() == "sleep" and os.getsid(kids[0].pid) == kids[0].pid:
            break
        assert time.monotonic() < deadline, kids
        time.sleep(0.01)
    leftovers.append(kids[0].pid)
    runner.signal_tree(child, signal.SIGTERM)
    run_to_end(child)
    wait_gone([kids[0].pid])


def test_a_later_kill_reaches_a_descendant_that_reparented_away(leftovers):
    # The survivor ignores TERM, leaves the group (setsid) and, once its parent dies of
    # TERM, belongs to init: only signal_tree's memory of it can find it for the KILL.
    survivor = 'trap "" TERM; echo survivor $$; while :; do sleep 0.1; done'
    child = runner.spawn(make_job(f"setsid sh -c '{survivor}' & wait"), run_id=1)
    leftovers.append(child.pid)
    wait_for_output(child, "survivor ")
    pid = int(child.output.snapshot()[0].split()[1])
    leftovers.append(pid)
    runner.signal_tree(child, signal.SIGTERM)
    assert wait_exit(child).signal == signal.SIGTERM
    assert _alive(pid) and psutil.Process(pid).ppid() != child.pid
    runner.signal_tree(child, signal.SIGKILL)
    wait_gone([pid])
    runner.close_output(child)


def test_a_stopped_job_still_acts_on_term(leftovers):
    child = runner.spawn(make_job("echo up; kill -STOP $$; echo never"), run_id=1)
    leftovers.append(child.pid)
    wait_for_output(child, "up")
    deadline = time.monotonic() + 10
    while psutil.Process(child.pid).status() != psutil.STATUS_STOPPED:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    runner.signal_tree(child, signal.SIGTERM)
    assert run_to_end(child).signal == signal.SIGTERM


def test_signalling_a_job_that_is_gone_is_not_an_error():
    child = runner.spawn(make_job("true"), run_id=1)
    run_to_end(child)
    runner.signal_tree(child, signal.SIGTERM)
    runner.signal_tree(child, signal.SIGKILL)


def test_a_reused_pid_is_never_signalled(leftovers):
    # A remembered descendant whose pid now belongs to another process (here: this test's
    # own pid, with a start time that does not match) is left alone.
    child = runner.spawn(make_job("true"), run_id=1)
    run_to_end(child)
    child.seen_descendants[os.getpid()] = 1  # no process started at tick 1
    runner.signal_tree(child, signal.SIGKILL)  # would kill pytest if it did not check


def test_reap_exited_collects_only_exited_known_children():
    fast = subprocess.Popen(["true"])
    slow = subprocess.Popen(["sleep", "5"])
    try:
        exits = wait_until(lambda: runner.reap_exited({fast.pid, slow.pid}), 5, what="the fast child")
        assert [e.pid for e in exits] == [fast.pid] and exits[0].exit_code == 0
        assert runner.reap_exited({slow.pid}) == []
    finally:
        slow.kill()
        slow.wait()
        fast.returncode = 0


# --- finding a job's processes by their mark -----------------------------------------------


def test_the_jobs_file_cannot_change_a_runs_marks():
    _, out = run("echo \"$CRONSUP_RUN_ID $CRONSUP_STORE\"",
                 environment=(("CRONSUP_RUN_ID", "99"), ("CRONSUP_STORE", "other")))
    assert out == "1 \n"  # spawned without a store: none claimed either
    child = runner.spawn(make_job("echo $CRONSUP_STORE", environment=(("CRONSUP_STORE", "other"),)),
                         run_id=2, store="mine")
    run_to_end(child)
    assert child.output.snapshot()[0] == b"mine\n"


def test_find_marked_finds_a_jobs_processes_wherever_they_went(leftovers):
    # A double fork into a session of its own: its parent is init, not the job.
    child = runner.spawn(make_job("(setsid sleep 300 &); sleep 300 & echo $!; wait"),
                         run_id=7, store="teststore1")
    leftovers.append(child.pid)
    wait_for_output(child, "\n")
    found = wait_until(lambda: (m := runner.find_marked("teststore1").get(7, {})) and len(m) == 3 and m,
                       5, what="the shell, its sleep and the setsid'd one")
    leftovers.extend(found)
    assert child.pid in found and found[child.pid] == child.start_ticks
    assert runner.find_marked("teststore2") == {}
    runner.signal_tree(child, signal.SIGKILL, marked=found)
    run_to_end(child)
    wait_until(lambda: not runner.tree_alive(child, runner.find_marked("teststore1").get(7)), 5,
               what="every process of the job to be gone")
    wait_gone(list(found))


def test_adopt_signals_what_an_earlier_daemon_left(leftovers):
    proc = subprocess.Popen(["sh", "-c", "sleep 300 & wait"], start_new_session=True,
                            env={"CRONSUP_RUN_ID": "5", "CRONSUP_STORE": "teststore3", "PATH": "/usr/bin:/bin"})
    leftovers.append(proc.pid)
    found = wait_until(lambda: (m := runner.find_marked("teststore3").get(5, {})) and len(m) == 2 and m, 5,
                       what="the shell and its sleep")
    leftovers.extend(found)
    child = runner.adopt(5, None, 0, found)  # the pid unknown: the session leader stands in
    assert child.pid == proc.pid
    assert runner.tree_alive(child)
    runner.signal_tree(child, signal.SIGTERM)
    proc.wait(5)
    wait_until(lambda: not runner.tree_alive(child), 5, what="the adopted tree to be gone")


def test_a_spawn_out_of_file_descriptors_is_transient():
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    free = os.open("/dev/null", os.O_RDONLY)
    os.close(free)
    resource.setrlimit(resource.RLIMIT_NOFILE, (free, hard))  # the next new fd fails
    try:
        with pytest.raises(SpawnError) as raised:
            runner.spawn(make_job("true"), run_id=1)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert raised.value.transient and "Too many open files" in raised.value.reason
    with pytest.raises(SpawnError) as raised:
        runner.spawn(make_job("true", shell="/nonexistent/sh"), run_id=1)
    assert not raised.value.transient


@pytest.fixture
def raised_fd_limit():
    """The soft open files limit at 512, as a daemon that raised it from 100 has it."""
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    if before[1] != resource.RLIM_INFINITY and before[1] < 512:
        pytest.skip(f"the hard open files limit here is {before[1]}; these tests need 512")
    resource.setrlimit(resource.RLIMIT_NOFILE, (512, before[1]))
    yield (100, before[1])
    resource.setrlimit(resource.RLIMIT_NOFILE, before)


def test_a_job_has_the_old_fd_limit_from_its_first_command_and_the_daemon_keeps_its_own(
        raised_fd_limit):
    outputs = set()
    for run_id in range(30):  # a limit set from outside after the exec would lose some
        child = runner.spawn(make_job("ulimit -Sn"), run_id, nofile=raised_fd_limit)
        run_to_end(child)
        outputs.add(child.output.snapshot()[0])
    assert outputs == {b"100\n"}
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == 512


def test_a_daemon_whose_low_fds_are_taken_still_gives_jobs_the_old_fd_limit(raised_fd_limit):
    held = []
    try:
        while not held or held[-1] < 100:  # every fd under the old limit is in use
            held.append(os.open("/dev/null", os.O_RDONLY))
        child = runner.spawn(make_job("sleep 0.2; ulimit -Sn"), 1, nofile=raised_fd_limit)
        run_to_end(child)
    finally:
        for fd in held:
            os.close(fd)
    assert child.output.snapshot()[0] == b"100\n"  # set from outside, after the exec
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == 512


@needs_root
def test_a_job_of_another_user_has_the_old_fd_limit_too(raised_fd_limit):
    child = runner.spawn(make_job("ulimit -Sn", user="nobody"), 1, nofile=raised_fd_limit)
    run_to_end(child)
    assert child.output.snapshot()[0] == b"100\n"


def test_a_process_exiting_while_proc_is_read_is_skipped_not_an_error(monkeypatch):
    # The kernel answers ESRCH to an open of /proc/PID/stat while PID is exiting: a race no
    # test can time, so the open is made to fail that way for one live pid.
    real_open = os.open
    victim = os.getppid()

    def racing_open(path, flags, *args):
        if path == f"/proc/{victim}/stat":
            raise ProcessLookupError(3, "No such process")
        return real_open(path, flags, *args)

    monkeypatch.setattr(runner.os, "open", racing_open)
    assert runner.start_ticks(victim) is None
    table = runner._process_table()
    assert victim not in table and os.getpid() in table


def test_the_start_ticks_a_spawn_takes_from_the_clock_are_the_ones_proc_shows():
    children = [runner.spawn(make_job("sleep 5" if i % 2 else "sleep 5;"), run_id=i) for i in range(40)]
    try:
        for child in children:
            assert child.start_ticks == runner.start_ticks(child.pid)
            assert abs(child.create_time - psutil.Process(child.pid).create_time()) < 1.01
    finally:
        for child in children:
            runner.signal_tree(child, signal.SIGKILL)
        for child in children:
            run_to_end(child)


def test_two_clock_readings_in_different_ticks_name_no_tick():
    tick = 10**9 // os.sysconf("SC_CLK_TCK")
    assert runner._same_tick(5 * tick + 1, 6 * tick - 1) == 5
    assert runner._same_tick(6 * tick - 1, 6 * tick) is None
