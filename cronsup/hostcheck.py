"""What `cronsup check` warns about on this host: a valid file that would not run as meant here.

Warnings, not errors: a jobs file may be written for another host, whose users, shells and
directories this one lacks.
"""

from __future__ import annotations

import os
import pwd
import shutil

from cronsup.model import JobsFile, JobsfileWarning, JobSpec


def warnings(jf: JobsFile, system: bool = False) -> list[JobsfileWarning]:
    """Every warning for the jobs of `jf`, in line order."""
    found = []
    for job in jf.jobs:
        found += [JobsfileWarning(jf.path, job.line, m) for m in _job_warnings(job, system)]
    return sorted(found, key=lambda w: w.line)


def _job_warnings(job: JobSpec, system: bool) -> list[str]:
    out = []
    if job.user is not None and not _user_exists(job.user):
        what = "the line's user field" if system else "user"
        message = f"{what} {job.user!r} is not a user on this host"
        if shutil.which(job.user):
            # `* * * * * echo hi` read as a system line: "echo" is taken as the user.
            message += (f"; is {job.user!r} the command of a line written without its user "
                        "field (a user crontab's line in the system format)?")
        out.append(message)
    if not (os.path.isfile(job.shell) and os.access(job.shell, os.X_OK)):
        out.append(f"shell {job.shell!r} is not an executable file on this host: the job "
                   "cannot start here")
    if job.workdir is not None and not os.path.isdir(job.workdir):
        out.append(f"workdir {job.workdir!r} is not a directory on this host: the job cannot "
                   "start here")
    if job.stdin is not None and _cut_short(job.command):
        out.append(f"the unescaped % cuts the command short (cron's rule: the text after it is "
                   f"the job's standard input), so it runs {_shown(job.command)}; write \\% for a "
                   "literal %, as in $(date +\\%F)")
    return out


def _shown(command: str) -> str:
    """The command as the file has it: repr() would double every backslash."""
    return f"'{command}'" if command.isprintable() else repr(command)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _cut_short(command: str) -> bool:
    """The text before the first unescaped % leaves a quote, `$(` or a backtick open, or ends
    in `+` (date's format): the % was meant as part of the command, not to start its input.

    A `cat > note%Dear admin,` line, whose command is whole, is cron's stdin feature used on
    purpose and gets no warning.
    """
    if command.rstrip().endswith("+"):
        return True
    quote: str | None = None
    depth = 0  # open $( ... )
    backtick = False
    i = 0
    while i < len(command):
        ch = command[i]
        if ch == "\\" and quote != "'":
            i += 2
            continue
        if quote:
            if ch == quote:
                quote = None
            elif quote == '"' and command.startswith("$(", i):
                depth += 1
                i += 1
            elif quote == '"' and ch == ")" and depth:
                depth -= 1
        elif ch in "'\"":
            quote = ch
        elif command.startswith("$(", i):
            depth += 1
            i += 1
        elif ch == ")" and depth:
            depth -= 1
        elif ch == "`":
            backtick = not backtick
        i += 1
    return quote is not None or depth > 0 or backtick
