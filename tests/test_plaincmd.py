"""A plain command runs without its shell, with the shell's own results; anything else keeps sh."""

from __future__ import annotations

import os
import pwd
import subprocess

import pytest

from conftest import wait_until
from cronsup import plaincmd, runner
from cronsup.runner import SpawnError
from test_runner import make_job, needs_root, run_to_end

PATH = "/usr/bin:/bin"


def start(command: str, **options):
    options.setdefault("environment", (("PATH", PATH),))
    return runner.spawn(make_job(command, **options), run_id=1)


def run(command: str, **options) -> tuple[int | None, int | None, str]:
    child = start(command, **options)
    exit = run_to_end(child)
    return exit.exit_code, exit.signal, child.output.snapshot()[0].decode()


def comm(pid: int) -> str:
    """The program `pid` runs. vfork lets Popen return as soon as the child has left our
    memory, before its exec has renamed it: until then it shows our own name."""
    def read(p):
        with open(f"/proc/{p}/comm") as f:
            return f.read().strip()
    mine = read(os.getpid())
    return wait_until(lambda: (name := read(pid)) != mine and name, 5, what="the exec")


def stop(child) -> None:
    import signal
    runner.signal_tree(child, signal.SIGKILL)
    run_to_end(child)


def sh(command: str, cwd: str = "/root", env: dict | None = None) -> tuple[int, str]:
    """What /bin/sh -c makes of `command`, run by the test itself."""
    done = subprocess.run(["/bin/sh", "-c", command], cwd=cwd, env=env or {"PATH": PATH},
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return done.returncode, done.stdout


@pytest.mark.parametrize("command, words", [
    ("/usr/bin/backup --all", ["/usr/bin/backup", "--all"]),
    ("  run-parts\t/etc/cron.daily  ", ["run-parts", "/etc/cron.daily"]),
    ("php artisan schedule:run --env=prod -v", ["php", "artisan", "schedule:run", "--env=prod", "-v"]),
    ("/opt/x/bin/tool a,b user@host +5 1.5", ["/opt/x/bin/tool", "a,b", "user@host", "+5", "1.5"]),
])
def test_plain_words_splits_a_command_made_of_plain_words(command, words):
    assert plaincmd.plain_words(command) == words


@pytest.mark.parametrize("command", [
    "", "   ", "echo hi", "cd /tmp", "exit 3", ". /etc/profile", ": noop", "test -f x", "[ -f x ]",
    "true", "kill 1", "exec sleep 1", "if", "export A", "umask 077", "printf x", "pwd",
    "cmd > out", "cmd 2>&1", "cmd < in", "a | b", "a && b", "a; b", "a &", "ls *", "ls x?",
    "ls [ab]", "cat ~/x", "cat ~", "echo $HOME", "echo `date`", "cmd 'a b'", 'cmd "a"', r"cmd a\ b",
    "X=1 cmd", "cmd # comment", "! cmd", "(cmd)", "{ cmd; }", "date +%F", "cmd\nother", "cmd é",
    "cmd a=~/x=", "/bin/cmd\u00a0x",
])
def test_shell_syntax_builtins_and_reserved_words_are_left_to_the_shell(command):
    assert plaincmd.plain_words(command) is None


def test_find_program_takes_the_first_regular_file_in_path_as_dash_does(tmp_path):
    (tmp_path / "a" / "prog").mkdir(parents=True)  # a directory of that name is passed over
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "prog").write_text("")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "prog").write_text("")
    path = f"{tmp_path}/a:{tmp_path}/nowhere:{tmp_path}/b/:{tmp_path}/c"
    assert plaincmd.find_program("prog", path) == f"{tmp_path}/b/prog"
    assert plaincmd.find_program("./prog", path) == "./prog"
    assert plaincmd.find_program("missing", path) is None
    # relative and empty entries mean the job's directory, which the daemon does not know here
    assert plaincmd.find_program("prog", f"rel:{tmp_path}/b") is None
    assert plaincmd.find_program("prog", f":{tmp_path}/b") is None
    assert plaincmd.find_program("prog", f"{tmp_path}/b%builtin") is None


def test_only_the_default_shell_is_skipped():
    env = {"PATH": PATH}
    assert plaincmd.direct("/bin/sh", "sleep 1", env) == ("/usr/bin/sleep", ["sleep", "1"])
    assert plaincmd.direct("/bin/bash", "sleep 1", env) is None
    assert plaincmd.direct("/bin/sh", "sleep 1", {**env, "BASH_FUNC_sleep%%": "() { :; }"}) is None
    assert plaincmd.direct("/bin/sh", "sleep 1", {**env, "PWD": "/x"}) is None


def test_a_plain_command_is_the_jobs_own_process_with_no_shell_in_between():
    child = start("sleep 30")
    try:
        assert comm(child.pid) == "sleep"
        with open(f"/proc/{child.pid}/stat") as f:
            assert int(f.read().rsplit(")", 1)[1].split()[1]) == os.getpid()
        assert os.getsid(child.pid) == os.getpgid(child.pid) == child.pid
        assert child.start_ticks == runner.start_ticks(child.pid)
    finally:
        stop(child)


@pytest.mark.parametrize("command", ["sleep 30 > /dev/null", "echo x; sleep 30", "sleep '30'",
                                     "X=1 sleep 30", "sleep 30;", "sleep 30 | cat"])
def test_a_command_with_shell_syntax_still_runs_in_sh(command):
    child = start(command)
    try:
        assert comm(child.pid) == "sh"
    finally:
        stop(child)


def test_a_job_whose_shell_is_bash_still_runs_in_bash():
    child = start("sleep 30", shell="/bin/bash", environment=(("PATH", PATH), ("SHELL", "/bin/bash")))
    try:
        # bash execs a lone command in its own place: the argv it ran tells
        assert comm(child.pid) in ("bash", "sleep")
        assert open(f"/proc/{child.pid}/cmdline").read().startswith(("/bin/bash\0-c\0", "sleep\0"))
    finally:
        stop(child)


def test_output_exit_code_environment_and_directory_match_the_shells(tmp_path):
    script = tmp_path / "job"
    script.write_text('#!/bin/sh\necho "out $0 $*"\necho err >&2\nenv | sort\n/bin/pwd\nexit 3\n')
    script.chmod(0o755)
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    for workdir in (str(tmp_path), str(tmp_path / "link")):
        direct = run(f"{script} a b", workdir=workdir)
        shelled = run(f"{script} a b;", workdir=workdir)
        assert direct == shelled
        code, _, out = direct
        assert code == 3 and out.startswith(f"out {script} a b\nerr\n")
        assert f"PWD={os.path.realpath(workdir)}\n" in out  # as dash exports it: the physical path
        assert out.rstrip().endswith(os.path.realpath(workdir))


def test_the_command_is_looked_up_with_the_jobs_own_path(tmp_path):
    for folder in ("one", "two"):
        (tmp_path / folder).mkdir()
        prog = tmp_path / folder / "which-one"
        prog.write_text(f"#!/bin/sh\necho {folder} $0\n")
    (tmp_path / "one" / "which-one").chmod(0o644)  # not executable: sh goes on to the next
    (tmp_path / "two" / "which-one").chmod(0o755)
    env = (("PATH", f"{tmp_path}/one:{tmp_path}/two:{PATH}"),)
    # the kernel hands a #! script's interpreter the path the lookup found, with sh as without
    assert run("which-one", environment=env) == (0, None, f"two {tmp_path}/two/which-one\n")
    assert run("which-one;", environment=env) == (0, None, f"two {tmp_path}/two/which-one\n")


def test_a_missing_command_gets_the_shells_message_and_127():
    code, sig, out = run("no-such-command-here x")
    assert (code, out) == sh("no-such-command-here x") and code == 127 and sig is None
    assert "not found" in out


def test_a_file_that_is_not_executable_gets_the_shells_message_and_126(tmp_path):
    prog = tmp_path / "prog"
    prog.write_text("echo never\n")
    prog.chmod(0o644)
    code, sig, out = run(f"{prog} x")
    assert (code, out) == sh(f"{prog} x") and code == 126 and "Permission denied" in out


def test_a_script_without_a_hash_bang_is_run_by_the_shell_as_before(tmp_path):
    prog = tmp_path / "prog"
    prog.write_text('echo "from $0 with $1"; exit 4\n')
    prog.chmod(0o755)
    assert run(f"{prog} x") == (4, None, f"from {prog} with x\n")


def test_a_job_killed_by_a_signal_is_recorded_with_its_signal():
    code, sig, out = run("/bin/kill -KILL 0")  # the group: the job itself
    assert (code, sig, out) == (None, 9, "")


def test_stdin_from_percent_text_reaches_a_plain_command():
    assert run("cat", stdin="line one\nline two\n") == (0, None, "line one\nline two\n")


def test_a_missing_workdir_is_the_same_error_as_before(tmp_path):
    with pytest.raises(SpawnError, match=f"workdir {tmp_path}/gone: No such file or directory"):
        start("sleep 1", workdir=str(tmp_path / "gone"))


@needs_root
def test_a_user_job_runs_plainly_as_that_user_in_its_home_or_root(tmp_path):
    nobody = pwd.getpwnam("nobody")
    assert run("/usr/bin/id -u", user="nobody") == (0, None, f"{nobody.pw_uid}\n")
    assert run("/usr/bin/id -g", user="nobody") == (0, None, f"{nobody.pw_gid}\n")
    # nobody's home does not exist: / as with the shell, and PWD says so
    assert run("/bin/pwd", user="nobody") == (0, None, "/\n")
    child = start("sleep 30", user="nobody")
    try:
        assert comm(child.pid) == "sleep" and os.stat(f"/proc/{child.pid}").st_uid == nobody.pw_uid
    finally:
        stop(child)
    direct = sorted(run("/usr/bin/env", user="nobody")[2].splitlines())
    shelled = sorted(run("/usr/bin/env;", user="nobody")[2].splitlines())
    assert direct == shelled and "PWD=/" in direct


@needs_root
def test_a_user_job_in_a_directory_it_cannot_enter_fails_as_before(tmp_path):
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    with pytest.raises(SpawnError, match=f"workdir {private}: Permission denied .as user 'nobody'."):
        start("/usr/bin/id", user="nobody", workdir=str(private))


def test_the_daemon_is_the_parent_of_a_plain_job(daemon):
    daemon.write("""\
        [job.stat]
        @every 1s cat /proc/self/stat
        [job.shelled]
        @every 1s cat /proc/self/stat > /dev/stdout
        """)
    daemon.start()
    (run_,) = daemon.finished("stat")[:1]
    (shelled,) = daemon.finished("shelled")[:1]
    pid, rest = daemon.output_of(run_.id).decode().split(" ", 1)
    assert int(pid) == run_.pid and rest.startswith("(cat) ")
    assert int(rest.rsplit(")", 1)[1].split()[1]) == daemon.proc.pid
    pid, rest = daemon.output_of(shelled.id).decode().split(" ", 1)
    assert int(pid) != shelled.pid  # dash forked it
    assert int(rest.rsplit(")", 1)[1].split()[1]) == shelled.pid
    assert daemon.stop() == 0
