"""`cronsup import`: crontabs to a jobs file with pinned names and the same meaning."""

from __future__ import annotations

import os
import re

import tomli_w

from cronsup import jobsfile, names
from cronsup.model import JobSpec

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
# Debian's cron reads only the files of /etc/cron.d whose names are made of these (so
# `sysstat.dpkg-old`, `job.disabled`, `backup~` and `.placeholder` are ignored), as run-parts
# does with its LSB names.
_CRON_D_NAME = re.compile(r"[A-Za-z0-9_-]+")


def cron_ignores(path: str) -> str | None:
    """Why cron would not read the system crontab `path`, or None when it would."""
    directory, name = os.path.split(os.path.abspath(path))
    if os.path.basename(directory) == "cron.d" and not _CRON_D_NAME.fullmatch(name):
        return (f"cron ignores it: the names of files in cron.d it reads are made of letters, "
                f"digits, '_' and '-' only, and {name!r} is not")
    return None


def _value(value: object) -> str:
    """One TOML value as tomli-w writes it."""
    return tomli_w.dumps({"v": value}).split("=", 1)[1].strip()


def _key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _value(key)


def inline_table(table: dict[str, str]) -> str:
    """{ KEY = "value", ... }: a block's TOML cannot hold [sub.tables] (they look like headers)."""
    return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in table.items()) + " }"


def convert(sources: list[tuple[str, str]], system: bool = False,
            owners: dict[str, str] | None = None) -> str:
    """A jobs file equivalent to the crontabs `sources` [(path, text)], in order.

    Each job gets a [job.NAME] block, so its name no longer depends on other lines, and a
    name a person would write (names.readable: `cron-daily`, `sa1`). With one crontab, its
    environment lines are kept as they are. With several, a file's settings would leak into
    the next file's jobs, so each job carries its environment in `env`. Where MAILTO is
    unset, cron mailed the output to the line's user (system crontabs) or the crontab's
    owner (`owners`: path -> user name): the job gets that `mailto`, so it still does.
    Raises JobsfileErrors for a crontab cron would not accept.
    """
    parsed = []
    errors = []
    for path, text in sources:
        try:
            parsed.append((path, text, jobsfile.parse(text, path, system=system)))
        except jobsfile.JobsfileErrors as e:
            errors.extend(e.errors)
    if errors:
        raise jobsfile.JobsfileErrors(errors)
    all_jobs = [job for _, _, jf in parsed for job in jf.jobs]
    final = names.assign([
        (None if job.auto_named else job.name, job.command, f"{job.schedule.text} {job.raw_command}")
        for job in all_jobs], readable_names=True)
    renamed = {id(job): name for job, name in zip(all_jobs, final)}
    separate_env = len(sources) > 1
    out = [
        "# Jobs file written by `cronsup import` from " + ", ".join(p for p, _, _ in parsed) + ".",
        "# Each job's name is pinned by its [job.NAME] block. Check it with `cronsup check`.",
    ]
    owners = owners or {}
    mail_to = {id(job): _default_mailto(job, owners.get(path), system)
               for path, _, jf in parsed for job in jf.jobs}
    if any(mail_to.values()):
        out += [
            "# cron mailed a job's output, when MAILTO was unset, to the crontab's owner (for a",
            "# system crontab: the line's user); cronsup mails only when told, so those jobs",
            "# have `mailto` set to keep that. Delete a job's `mailto` line for no mail.",
        ]
    for path, text, jf in parsed:
        out.append("")
        if separate_env:
            out.append(f"# ---- {path} ----")
        by_line = {job.line: job for job in jf.jobs}
        for number, line in enumerate(text.split("\n"), start=1):
            job = by_line.get(number)
            if job is not None:
                out.extend(_job_lines(job, renamed[id(job)], separate_env, system, mail_to[id(job)]))
            elif separate_env and _is_env_line(line):
                out.append("# " + line.strip() + "   (now in the env option of each job below)")
            else:
                out.append(line.rstrip("\r"))
        while out and out[-1] == "":
            out.pop()
    return "\n".join(out) + "\n"


def _is_env_line(line: str) -> bool:
    stripped = line.lstrip(" \t")
    if not stripped or stripped[0] in "#[@*" or stripped[0].isdigit():
        return False
    return jobsfile.parse_env_assignment(stripped) is not None


def _default_mailto(job: JobSpec, owner: str | None, system: bool) -> str | None:
    """Whom cron mailed `job`'s output when MAILTO was unset (None: MAILTO was set)."""
    if job.mailto is not None:
        return None
    return (job.user if system and job.user else None) or owner


def _job_lines(job: JobSpec, name: str, separate_env: bool, system: bool,
               mailto: str | None = None) -> list[str]:
    options: dict[str, object] = {}
    if system and job.user is not None:  # the user field becomes the option
        options["user"] = job.user
    if mailto:
        options["mailto"] = mailto
    lines = []
    if job.auto_named:  # a pinned job's [job.NAME] block is copied with the lines around
        lines.append(f"[job.{name}]")
    for key, value in options.items():
        lines.append(f"{key} = {_value(value)}")
    if separate_env and job.environment:
        lines.append(f"env = {inline_table(dict(job.environment))}")
    lines.append(f"{job.schedule.text} {job.raw_command}")
    return lines
