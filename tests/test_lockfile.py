"""The lock protocol, in one module: the daemon takes the lock, readers test it."""

import fcntl
import os
import threading

import pytest

from cronsup import clock, lockfile


def test_nobody_holds_a_lock_that_does_not_exist(tmp_path):
    assert lockfile.holder(str(tmp_path / "daemon.lock")) is None


def test_a_taken_lock_names_its_holder_and_a_closed_one_nobody(tmp_path):
    path = str(tmp_path / "daemon.lock")
    fd = lockfile.take(path, 4242)
    try:
        assert lockfile.holder(path) == 4242
        assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    finally:
        os.close(fd)
    assert lockfile.holder(path) is None


def test_a_second_taker_is_refused_with_the_holders_pid_after_a_moment(tmp_path):
    path = str(tmp_path / "daemon.lock")
    fd = lockfile.take(path, 4242)
    try:
        start = clock.mono()
        with pytest.raises(lockfile.Held) as held:
            lockfile.take(path, 5353)
        assert held.value.pid == 4242
        assert lockfile.PATIENCE <= clock.mono() - start < lockfile.PATIENCE + 2
        assert lockfile.holder(path) == 4242  # the refused taker wrote nothing
    finally:
        os.close(fd)


def test_a_reader_testing_the_lock_for_a_moment_does_not_pass_for_a_holder(tmp_path):
    path = str(tmp_path / "daemon.lock")
    os.close(lockfile.take(path, 1))
    reader = os.open(path, os.O_RDONLY)
    fcntl.flock(reader, fcntl.LOCK_SH)
    timer = threading.Timer(0.1, fcntl.flock, (reader, fcntl.LOCK_UN))
    timer.start()
    try:
        os.close(lockfile.take(path, 77))  # within its patience: taken, not refused
        assert lockfile.holder(path) is None
    finally:
        timer.join()
        os.close(reader)


def test_a_held_lock_whose_file_names_no_pid_reads_as_minus_one(tmp_path):
    path = str(tmp_path / "daemon.lock")
    fd = lockfile.take(path, 4242)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, b"garbage\n", 0)
        assert lockfile.holder(path) == -1
    finally:
        os.close(fd)


def test_a_lock_path_that_is_a_link_is_refused(tmp_path):
    (tmp_path / "elsewhere").write_text("")
    os.symlink(tmp_path / "elsewhere", tmp_path / "daemon.lock")
    with pytest.raises(lockfile.LockError, match="cannot open"):
        lockfile.take(str(tmp_path / "daemon.lock"), 1)
