"""`cronsup import`: crontabs to a jobs file with pinned names and the same meaning."""

from __future__ import annotations

import re

import tomli_w

from cronsup import jobsfile, names
from cronsup.model import JobSpec

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _value(value: object) -> str:
    """One TOML value as tomli-w writes it."""
    return tomli_w.dumps({"v": value}).split("=", 1)[1].strip()


def _key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _value(key)


def inline_table(table: dict[str, str]) -> str:
    """{ KEY = "value", ... }: a block's TOML cannot hold [sub.tables] (they look like headers)."""
    return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in table.items()) + " }"


def convert(sources: list[tuple[str, str]], system: bool = False) -> str:
    """A jobs file equivalent to the crontabs `sources` [(path, text)], in order.

    Each job gets a [job.NAME] block, so its name no longer depends on other lines. With one
    crontab, its environment lines are kept as they are. With several, a file's settings
    would leak into the next file's jobs, so each job carries its environment in `env`.
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
        for job in all_jobs])
    renamed = {id(job): name for job, name in zip(all_jobs, final)}
    separate_env = len(sources) > 1
    out = [
        "# Jobs file written by `cronsup import` from " + ", ".join(p for p, _, _ in parsed) + ".",
        "# Each job's name is pinned by its [job.NAME] block. Check it with `cronsup check`.",
    ]
    for path, text, jf in parsed:
        out.append("")
        if separate_env:
            out.append(f"# ---- {path} ----")
        by_line = {job.line: job for job in jf.jobs}
        for number, line in enumerate(text.split("\n"), start=1):
            job = by_line.get(number)
            if job is not None:
                out.extend(_job_lines(job, renamed[id(job)], separate_env, system))
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


def _job_lines(job: JobSpec, name: str, separate_env: bool, system: bool) -> list[str]:
    options: dict[str, object] = {}
    if system and job.user is not None:  # the user field becomes the option
        options["user"] = job.user
    lines = []
    if job.auto_named:
        lines.append(f"[job.{name}]")
    for key, value in options.items():
        lines.append(f"{key} = {_value(value)}")
    if separate_env and job.environment:
        lines.append(f"env = {inline_table(dict(job.environment))}")
    lines.append(f"{job.schedule.text} {job.raw_command}")
    return lines
