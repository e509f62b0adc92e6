"""`cronsup takeover`/`release`: cron's sources checked, cron stopped and masked, cronsup enabled
with --cron, the prior state recorded so `release` puts cron back exactly as it was."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from cronsup import clock
from cronsup.servicemgr import ServiceError, ServiceManager, Systemd, UnitState

CRON = "cron"
CRONSUP = "cronsup"
STATE = "var/lib/cronsup/takeover.json"
DROP_IN = "etc/systemd/system/cronsup.service.d/takeover.conf"
UNIT_DIRS = ("etc/systemd/system", "usr/lib/systemd/system", "lib/systemd/system")


def under(root: str, relative: str) -> str:
    return os.path.join(root, relative.lstrip("/"))


@dataclass
class Source:
    """One file cron would look at, and what cronsup --cron makes of it."""

    path: str  # as cron names it (/etc/cron.d/x), not under the test root
    verdict: str  # "ok", "ignored" (cron skips it too, by its name) or "skipped"
    reason: str = ""
    jobs: int = 0
    guarded: tuple[int, ...] = ()  # lines that do nothing where systemd runs


def source_verdicts(root: str = "/") -> list[Source]:
    """Every file cron would read under `root`, each with its verdict: the single place
    takeover asks "would each source run?", answered by `daemon --cron`'s own reading
    (cronfiles.check_sources), so the two never disagree."""
    from cronsup import cronfiles

    found = []
    for s in cronfiles.check_sources(root).sources:
        reason = s.reason or ""
        if s.errors:
            more = f" (and {len(s.errors) - 1} more)" if len(s.errors) > 1 else ""
            reason = s.errors[0].replace(root.rstrip("/") + "/", "/") + more + "; " + reason
        found.append(Source("/" + os.path.relpath(s.path, root), str(s.verdict),
                            reason.replace(root.rstrip("/") + "/", "/") if root != "/" else reason,
                            len(s.jobs), tuple(s.guarded)))
    return found


def cron_daemons(root: str = "/") -> list:
    """The cron daemon's processes: the pid in /run/crond.pid, and any process running cron's
    binary (a cron started by hand, or whose pidfile went)."""
    import psutil

    found = {}
    try:
        with open(under(root, "run/crond.pid")) as f:
            pid = int(f.read().split()[0])
        found[pid] = psutil.Process(pid)
    except (OSError, ValueError, IndexError, psutil.Error):
        pass
    binary = os.path.realpath(under(root, "usr/sbin/cron"))
    for proc in psutil.process_iter(["exe", "ppid"]):
        try:
            if proc.info["exe"] == binary and proc.pid not in found:
                if not any(proc.info["ppid"] == p for p in found):  # a job's fork, not a daemon
                    found[proc.pid] = proc
        except psutil.Error:
            continue
    return list(found.values())


def cron_jobs(daemons: list) -> list:
    """The processes cron started (every descendant of its daemons), oldest first."""
    import psutil

    jobs = {}
    for daemon in daemons:
        try:
            for child in daemon.children(recursive=True):
                jobs[child.pid] = child
        except psutil.Error:
            continue
    return sorted(jobs.values(), key=lambda p: p.pid)


def describe(proc) -> str | None:
    """`PID USER STARTED COMMAND` for a process still alive, else None."""
    import psutil

    try:
        with proc.oneshot():
            if not proc.is_running():
                return None
            from cronsup import fmt

            started = fmt.stamp(proc.create_time(), clock.wall())
            command = " ".join(proc.cmdline()) or f"[{proc.name()}]"
            return f"{proc.pid:>7}  {proc.username():<10} {started:<18} {command}"
    except psutil.Error:
        return None


# -- the record ----------------------------------------------------------------------------

@dataclass
class Record:
    manager: str
    cron: UnitState
    cronsup: UnitState
    taken_at: float = 0.0
    extra: dict = field(default_factory=dict)


def read_record(root: str) -> Record | None:
    path = under(root, STATE)
    try:
        with open(path) as f:
            data = json.load(f)
        return Record(data["manager"], UnitState(**data["cron"]), UnitState(**data["cronsup"]),
                      data.get("taken_at", 0.0))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ServiceError(f"{path}: the takeover record cannot be read ({e}); it says how "
                           "cron was before takeover: fix or remove it by hand") from None


def write_record(root: str, record: Record) -> None:
    path = under(root, STATE)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    data = {"manager": record.manager, "cron": record.cron.as_dict(),
            "cronsup": record.cronsup.as_dict(), "taken_at": record.taken_at}
    tmp = path + ".new"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# -- the steps -----------------------------------------------------------------------------

def exec_start(root: str) -> str:
    """cronsup.service's ExecStart with --cron added: the drop-in's command."""
    for d in UNIT_DIRS:
        unit = under(root, os.path.join(d, "cronsup.service"))
        if os.path.exists(unit):
            with open(unit) as f:
                lines = [ln.strip() for ln in f if ln.strip().startswith("ExecStart=")]
            if lines:
                command = lines[-1].removeprefix("ExecStart=")
                program, sep, rest = command.partition(" daemon")
                if sep and "--cron " not in rest + " ":
                    return f"{program} daemon --cron{rest}"
                return command
    raise ServiceError("cronsup.service is not installed (install the cronsup package, or "
                       "packaging/install.sh); takeover enables it")


def write_drop_in(root: str, dry_run: bool = False) -> bool:
    """Whether the drop-in changed (a running cronsup must then restart to get --cron)."""
    path = under(root, DROP_IN)
    text = ("# Written by `cronsup takeover`: cronsup runs cron's own files too (--cron).\n"
            "# `cronsup release` removes it.\n"
            "[Service]\nExecStart=\nExecStart=" + exec_start(root) + "\n")
    try:
        with open(path) as f:
            if f.read() == text:
                return False
    except OSError:
        pass
    if not dry_run:
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        with open(path + ".new", "w") as f:
            f.write(text)
        os.chmod(path + ".new", 0o644)
        os.replace(path + ".new", path)
    return True


def take_over(manager: ServiceManager, root: str, log) -> Record:
    """Stop, disable and mask cron; enable and start cronsup with --cron. Safe to repeat: an
    existing record is kept, since it holds how cron was before the first takeover, and a
    cronsup that already runs with --cron is not restarted (its running jobs go on)."""
    if isinstance(manager, Systemd):
        exec_start(root)  # no unit to enable: say so before cron is touched
    record = read_record(root)
    changed = record is None
    if record is None:
        record = Record(manager.name, manager.state(CRON), manager.state(CRONSUP), clock.wall())
        if not manager.dry_run:
            write_record(root, record)  # first: a failure below can still be undone by release
        log(f"{'would record' if manager.dry_run else 'recorded'} how cron and cronsup are now "
            f"in /{STATE}")
    cron = manager.state(CRON)
    if cron.enabled != "not-found":
        if cron.active:
            manager.stop(CRON)
        if cron.enabled not in ("disabled", "masked"):
            manager.disable(CRON)
        if cron.enabled != "masked":
            manager.mask(CRON)
    if isinstance(manager, Systemd) and write_drop_in(root, manager.dry_run):
        changed = True
        log(f"{'would write' if manager.dry_run else 'wrote'} /{DROP_IN} (ExecStart with --cron)")
        manager.reload_config()
    if manager.state(CRONSUP).enabled != "enabled":
        manager.enable(CRONSUP)
    if not manager.state(CRONSUP).active:
        manager.start(CRONSUP)
    elif changed:
        manager.restart(CRONSUP)  # running without --cron: SIGTERM graces its jobs, as a stop
    return record


def release(manager: ServiceManager, root: str, record: Record, log) -> None:
    """cronsup as it was before takeover (stopped first: no job runs twice), then cron."""
    before = record.cronsup
    now = manager.state(CRONSUP)
    if now.active and not before.active:
        manager.stop(CRONSUP)
    drop_in = under(root, DROP_IN)
    if os.path.exists(drop_in):
        os.unlink(drop_in)
        log(f"removed /{DROP_IN}")
        try:
            os.rmdir(os.path.dirname(drop_in))
        except OSError:
            pass
        manager.reload_config()
    _restore_enabled(manager, CRONSUP, before.enabled, manager.state(CRONSUP).enabled)
    if before.active:
        manager.restart(CRONSUP)  # it ran before takeover, without --cron: so again
    was = record.cron
    if was.enabled != "not-found":
        now = manager.state(CRON)
        if now.enabled == "masked" and was.enabled != "masked":
            manager.unmask(CRON)
            now = manager.state(CRON)
        _restore_enabled(manager, CRON, was.enabled, now.enabled)
        if was.active and not manager.state(CRON).active:
            manager.start(CRON)
    os.unlink(under(root, STATE))


def _restore_enabled(manager: ServiceManager, service: str, was: str, now: str) -> None:
    if was == now or was == "not-found":
        return
    if was == "enabled":
        manager.enable(service)
    elif was == "masked":
        manager.mask(service)
    elif was == "unregistered":
        manager.forget(service)
    elif was in ("disabled",) and now in ("enabled", "unregistered"):
        manager.disable(service)
