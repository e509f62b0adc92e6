"""Daemonizing for `daemon --detach`: fork, wait for ready, pidfile, the launcher's stderr."""

from __future__ import annotations

import errno
import logging
import os
import stat
import sys

import psutil

from cronsup import notify


class DetachError(Exception):
    """Detaching failed; the message says why (the CLI prints it and exits 1)."""


DETACH_PATIENCE = 60.0  # how long `daemon --detach` waits for the daemon to be ready


def _fail(message: str) -> None:
    raise DetachError(message)


def detach(d, pidfile: str | None) -> None:
    """Fork the daemon off; this process exits 0 once it is ready, or 1 with why it is not.

    Like a Type=forking service should: the pidfile exists when the command returns, and
    errors while starting reach the terminal instead of a log nobody reads. The caller
    sets up logging afterwards, in the daemon (with absolute paths: the daemon runs in /).
    """
    from cronsup.daemon import DaemonError

    try:
        d.check_can_start()  # report a held lock here, while there is a terminal to say it on
    except DaemonError as e:
        _fail(str(e))
    if pidfile:
        pidfile = os.path.abspath(pidfile)
        _clear_stale_pidfile(pidfile)
    ready_r, ready_w = os.pipe()
    stderr_r, stderr_w = os.pipe()
    child = os.fork()
    if child:
        os.close(ready_w)
        os.close(stderr_w)
        os.waitpid(child, 0)  # it exits as soon as it has forked the daemon
        launch = notify.await_ready(ready_r, stderr_r, DETACH_PATIENCE)
        sys.stderr.write(launch.said)
        if launch.startup is notify.Startup.READY:
            sys.exit(0)
        if launch.startup is notify.Startup.SLOW:
            _fail(f"the daemon is not ready after {DETACH_PATIENCE:.0f}s; it goes on starting in "
                 "the background (see its log)")
        _fail("the daemon exited while starting" if not launch.said else "the daemon did not start")
    os.close(ready_r)
    os.close(stderr_r)
    _become_daemon(d, pidfile, ready_w, stderr_w)


def _become_daemon(d, pidfile: str | None, ready_w: int, stderr_w: int) -> None:
    """In the forked child: detach (python-daemon), keeping the pipes to the launcher."""
    import daemon as pydaemon
    import lockfile
    from daemon.pidfile import TimeoutPIDLockFile

    os.environ[notify.READY_FD] = str(ready_w)  # the daemon's Notifier says READY=1 on it
    with open(stderr_w, "w", closefd=False) as launcher_stderr:
        context = pydaemon.DaemonContext(
            # A stale pidfile was removed above, so a held one is a race with another start.
            pidfile=TimeoutPIDLockFile(pidfile, 0) if pidfile else None,
            working_directory="/", umask=0o022, detach_process=True,
            files_preserve=[ready_w], stderr=launcher_stderr)
        try:
            context.open()
        except lockfile.Error as e:
            _fail(f"cannot create the pidfile {pidfile}: {e}")
    os.close(stderr_w)  # now fd 2
    d.pid = os.getpid()  # Daemon() was made before the forks

    def log_crash(*exc) -> None:
        # After the launcher has gone, stderr is a closed pipe: the traceback goes to the log.
        logging.getLogger("cronsup").critical("crashed", exc_info=exc)
        sys.__excepthook__(*exc)

    sys.excepthook = log_crash


def _clear_stale_pidfile(path: str) -> None:
    """Remove `path` if the pid in it is not a live cronsup; fail if it is one."""
    try:
        # Not through a symlink, not blocking on a FIFO, not more than a pid's worth: the
        # pidfile may sit in a directory others can write (/run is not, /tmp is).
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    except OSError as e:
        if e.errno == errno.ELOOP:
            _fail(f"the pidfile {path} is a symbolic link; cronsup does not follow it (remove it)")
        _fail(f"cannot read the pidfile {path}: {e.strerror}")
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            _fail(f"the pidfile {path} is not a regular file")
        text = os.read(fd, 64).decode(errors="replace").strip()
    finally:
        os.close(fd)
    try:
        if text.isdigit() and "cronsup" in " ".join(psutil.Process(int(text)).cmdline()):
            _fail(f"{path} names pid {text}, a running cronsup; stop it first, or give this one "
                 "another --pidfile")
    except psutil.Error:
        pass  # gone (or not ours to look at): the file is left over from a crash
    try:
        os.remove(path)
    except OSError as e:
        _fail(f"cannot remove the stale pidfile {path}: {e.strerror}")
