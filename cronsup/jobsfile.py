"""The jobs file: a crontab plus TOML option blocks, to validated JobSpecs.

Reads text only: no clock, no processes, no run log. Every problem is collected as a
`JobsfileError(path, line, message)`; `parse` raises `JobsfileErrors` holding all of them.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field, replace
from typing import Any

from cronsup import names, options, suggest, trust
from cronsup.model import AfterJobs, Cron, Every, JobsFile, JobsfileWarning, JobSpec, Schedule
from cronsup.schedule import KEYWORDS, ScheduleError, load_zone, never_fires, parse_schedule

NAME_RE = re.compile(r"[A-Za-z0-9_-]+")
_HEADER = re.compile(r"\[\s*([^\]]*?)\s*\]\s*(#.*)?")
_FIELD_LIKE = re.compile(r"[\d*][\d*,/-]*")
_EXCERPT = 40


class JobsfileError(Exception):
    """One problem in a jobs file, at a line."""

    def __init__(self, path: str, line: int, message: str):
        super().__init__(f"{path}:{line}: {message}")
        self.path, self.line, self.message = path, line, message


class JobsfileErrors(Exception):
    """Every problem found in a jobs file, in line order."""

    def __init__(self, errors: list[JobsfileError]):
        self.errors = sorted(errors, key=lambda e: e.line)
        super().__init__("\n".join(str(e) for e in self.errors))

    @property
    def first(self) -> JobsfileError:
        return self.errors[0]

    @property
    def summary(self) -> str:
        """The first error, and how many more: what `status` shows as the config error."""
        more = len(self.errors) - 1
        return str(self.first) + (f" (and {more} more error{'s' if more > 1 else ''})" if more else "")


def excerpt(text: str, limit: int = _EXCERPT) -> str:
    """`text` quoted, cut to `limit` characters so that a huge line cannot flood a message."""
    return repr(text if len(text) <= limit else text[:limit] + "…")


@dataclass
class _Block:
    kind: str  # "defaults" or "job"
    name: str | None
    line: int  # the header's line
    body: list[tuple[int, str]] = field(default_factory=list)

    @property
    def label(self) -> str:
        if self.kind in ("defaults", "cron"):
            return f"[{self.kind}]"
        return f"[job.{self.name}]"


@dataclass
class _Entry:
    """A schedule line with everything in effect for it, before names are settled."""

    line: int
    schedule: Schedule
    user: str | None
    raw_command: str
    environment: list[tuple[str, str]]
    options: dict[str, tuple[Any, int]]  # key -> (typed value, line)
    name: str | None  # pinned by [job.NAME]
    header_line: int | None


class JobsfileRefused(Exception):
    """A root daemon will not run this file: others could have written into it, or it is
    not a regular file. The message names the file and says how to fix it."""


def load(path: str, system: bool = False, *, as_root: bool = False) -> JobsFile:
    """Read and validate the jobs file at `path`; raise JobsfileErrors, JobsfileRefused or OSError.

    The file is opened once and never blocks (a FIFO is refused). With `as_root` (a root
    daemon, and `check` run by root), cron's rules apply: the file and every directory on
    the way to it belong to root and are not group- or other-writable (a sticky directory
    such as /tmp on the way is fine, as cron's spool is), and the file is not a symlink;
    the owner and mode checked are those of the file actually read.
    """
    # The path checked is the path opened: ".." after a symlink means to the kernel what
    # it does not mean to abspath, so the file is opened by its checked, absolute name.
    absolute = os.path.abspath(path)
    try:
        if as_root:
            trust.check_directory(os.path.dirname(absolute), {0}, sticky_ok=True)
        data = trust.read_file(absolute, {0} if as_root else None, shown=path)
    except trust.Untrusted as e:
        message = str(e)
        if not message.startswith(f"{path}:"):
            message = f"{path}: refused: {message}"
        raise JobsfileRefused(message) from None
    return parse_bytes(data, path, system=system)


def parse_bytes(data: bytes, path: str, system: bool = False, *, cron: bool = False) -> JobsFile:
    """Validate raw file bytes: encoding and line endings first, then the content.

    With `cron`, the bytes are one of cron's own files (a crontab, a cron.d file): what
    cron would reject is an error (option blocks, @every, @after)."""
    errors: list[JobsfileError] = []
    warnings: list[JobsfileWarning] = []
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]  # a UTF-8 byte-order mark, as some editors write: harmless
    lines: list[str] = []
    crlf = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if raw.endswith(b"\r"):
            crlf.append(number)
            raw = raw[:-1]
        if b"\0" in raw:
            errors.append(JobsfileError(path, number, "the line contains a NUL byte; is this a binary file?"))
            lines.append("")
            continue
        try:
            lines.append(raw.decode("utf-8"))
        except UnicodeDecodeError as e:
            where = f"byte {raw[e.start]:#04x} at column {e.start + 1}"
            if raw.lstrip().startswith(b"#"):
                # Old ISO-8859-1 crontabs ("Sicherung f\xfcr ..."): cron never reads a comment.
                warnings.append(JobsfileWarning(
                    path, number, f"the comment is not valid UTF-8 ({where}; an ISO-8859-1 file?); "
                    "it is ignored as cron ignores it (convert with `iconv -f latin1 -t utf-8`)"))
                lines.append("#")
                continue
            errors.append(JobsfileError(path, number, f"the line is not valid UTF-8 ({where})"))
            lines.append("")
    if crlf:
        more = f" (and {len(crlf) - 1} more line{'s' if len(crlf) > 2 else ''})" if len(crlf) > 1 else ""
        errors.append(JobsfileError(
            path, crlf[0],
            f"Windows line ending (CR LF){more}: cron would pass the CR to the command as part "
            "of it; convert the file with `dos2unix` or `sed -i 's/\\r$//'`"))
    if lines and lines[-1] == "" and data.endswith(b"\n"):
        lines.pop()
    try:
        jobs = parse_lines(lines, path, system=system, cron=cron)
    except JobsfileErrors as e:
        errors.extend(e.errors)
        raise JobsfileErrors(errors) from None
    if errors:
        raise JobsfileErrors(errors)
    if warnings:
        jobs = replace(jobs, warnings=tuple(sorted([*warnings, *jobs.warnings], key=lambda w: w.line)))
    return replace(jobs, source=data)


def parse(text: str, path: str = "<jobs>", system: bool = False, *, cron: bool = False) -> JobsFile:
    """Validate the text of a jobs file (with `cron`: of one of cron's own files)."""
    return parse_bytes(text.encode("utf-8", "surrogateescape"), path, system=system, cron=cron)


def parse_lines(lines: list[str], path: str, system: bool = False, *, cron: bool = False) -> JobsFile:
    """Validate decoded lines (without their newlines)."""
    return _Parser(path, system, cron).run(lines)


class _Parser:
    def __init__(self, path: str, system: bool, cron: bool = False):
        self.path = path
        self.system = system
        self.cron = cron  # one of cron's own files: no blocks, cron's keywords only
        self.cron_options: dict[str, tuple[Any, int]] = {}  # the jobs file's [cron] block
        self.errors: list[JobsfileError] = []
        self.warnings: list[JobsfileWarning] = []
        self.env: dict[str, str] = {}
        self.defaults: dict[str, tuple[Any, int]] = {}
        self.block: _Block | None = None
        self.entries: list[_Entry] = []
        self.pinned: dict[str, int] = {}

    def error(self, line: int, message: str) -> None:
        self.errors.append(JobsfileError(self.path, line, message))

    def warn(self, line: int, message: str) -> None:
        self.warnings.append(JobsfileWarning(self.path, line, message))

    def run(self, lines: list[str]) -> JobsFile:
        for number, text in enumerate(lines, start=1):
            self.line(number, text)
        if self.block is not None:
            self.close_block_without_schedule(len(lines))
        jobs = self.finish()
        if self.errors:
            raise JobsfileErrors(self.errors)
        return JobsFile(path=self.path, jobs=tuple(jobs),
                        warnings=tuple(sorted(self.warnings, key=lambda w: w.line)),
                        cron_options={k: v for k, (v, _) in self.cron_options.items()})

    # -- lines -------------------------------------------------------------------------

    def line(self, number: int, text: str) -> None:
        stripped = text.lstrip(" \t")
        if self.cron and stripped.startswith("["):
            self.error(number, f"{excerpt(stripped.rstrip())}: cron's own files hold no option "
                               "blocks (cron would reject the file); set options for cron's jobs "
                               "in the [cron] block of the jobs file")
            return
        header = _HEADER.fullmatch(stripped.rstrip()) if stripped.startswith("[") else None
        if self.block is not None:
            if header is not None:
                self.close_block_without_schedule(number - 1)
                self.open_block(number, header.group(1))
            elif stripped[:1].isdigit() or stripped[:1] in ("*", "@"):
                parsed = self.parse_toml(self.block)
                if isinstance(parsed, tomllib.TOMLDecodeError) and _unfinished(parsed, self.block):
                    self.block.body.append((number, text))  # a number inside an open array
                else:
                    block, values = self.close_block(parsed)
                    self.schedule_line(number, stripped, block, values)
            elif stripped.startswith("[") and not stripped.startswith("[["):
                self.error(number, f"unknown block header {excerpt(stripped.rstrip())}: expected "
                                   "[defaults] or [job.NAME]; write a table option inline, "
                                   "as in env = { KEY = \"value\" }")
            else:
                self.block.body.append((number, text))
            return
        if not stripped or stripped.startswith("#"):
            return
        if header is not None:
            self.open_block(number, header.group(1))
        elif stripped[:1].isdigit() or stripped[:1] in ("*", "@"):
            self.schedule_line(number, stripped, None, {})
        else:
            self.environment_line(number, stripped)

    def environment_line(self, number: int, text: str) -> None:
        parsed = parse_env_assignment(text)
        if parsed is None:
            self.error(number, f"{excerpt(text)} is not a schedule line (which starts with a digit, "
                               "'*' or '@'), an environment setting NAME=value, or an option "
                               "block header [job.NAME]")
            return
        name, value = parsed
        if "=" in name:
            self.error(number, f"environment variable name {excerpt(name)} cannot contain '='")
            return
        if len(f"{name}={value}".encode("utf-8", "surrogateescape")) > options.MAX_ARG:
            self.error(number, f"{name}: too long: NAME=value is at most {options.MAX_ARG} bytes")
            return
        if name == "SHELL" and value:
            try:
                options.check_shell(value)
            except ValueError as e:
                self.error(number, f"SHELL: {e}")
                return
        if name == "CRON_TZ" and value:
            try:
                load_zone(value)
            except ValueError as e:
                self.error(number, f"CRON_TZ: {e}")
                return
        self.env.pop(name, None)  # keep file order of the latest setting
        self.env[name] = value

    def open_block(self, number: int, inner: str) -> None:
        if inner in ("defaults", "cron"):
            self.block = _Block(inner, None, number)
            return
        if inner.startswith("job."):
            name = inner[4:].strip().strip('"')
            if not NAME_RE.fullmatch(name):
                self.error(number, f"job name {excerpt(name)} may contain only letters, digits, "
                                   "'-' and '_'")
            elif name in self.pinned:
                self.error(number, f"duplicate job name {name!r}: already used by the block at "
                                   f"line {self.pinned[name]}")
            else:
                self.pinned[name] = number
            self.block = _Block("job", name, number)
            return
        self.error(number, f"unknown block [{excerpt(inner)[1:-1]}]: expected [defaults], [cron] or "
                           "[job.NAME]")
        self.block = _Block("bad", None, number)

    @staticmethod
    def parse_toml(block: _Block) -> dict[str, Any] | tomllib.TOMLDecodeError:
        if not block.body:
            return {}  # a block that only names its job: nothing to parse
        try:
            return tomllib.loads("\n".join(t for _, t in block.body) + "\n")
        except tomllib.TOMLDecodeError as e:
            return e

    def close_block(self, parsed: dict[str, Any] | tomllib.TOMLDecodeError | None = None
                    ) -> tuple[_Block | None, dict[str, tuple[Any, int]]]:
        """Validate the open block's TOML; fold [defaults] in. Returns a job block's options."""
        block, self.block = self.block, None
        assert block is not None
        values = self.block_options(block, parsed)
        if block.kind == "defaults":
            if "after" in values:
                self.error(values["after"][1], "'after' cannot be set in [defaults]; set it in the "
                                               "[job.NAME] block of each @after job")
                del values["after"]
            self.defaults.update(values)
            return None, {}
        if block.kind == "cron":
            for key in ("after", "user"):
                if key in values:
                    why = ("cron's jobs have no @after" if key == "after" else
                           "cron's files say whom each job runs as (the user field, the crontab's owner)")
                    self.error(values[key][1], f"{key!r} cannot be set in [cron]: {why}")
                    del values[key]
            self.cron_options.update(values)
            return None, {}
        if block.kind == "bad":
            return None, {}
        return block, values

    def close_block_without_schedule(self, last_line: int) -> None:
        block = self.block
        assert block is not None
        if block.kind == "job":
            self.error(block.line, f"the block {block.label} has no schedule line after it; "
                                   "put the job's schedule line right after its options")
            self.block_options(block)  # still report its option errors
            self.block = None
        else:
            self.close_block()

    def block_options(self, block: _Block, parsed: dict[str, Any] | tomllib.TOMLDecodeError | None = None
                      ) -> dict[str, tuple[Any, int]]:
        """The block's TOML as typed options, each with the line it is on."""
        first = block.body[0][0] if block.body else block.line + 1
        last = block.body[-1][0] if block.body else block.line
        env_like = [(n, t) for n, t in block.body
                    if re.match(r"\s*[A-Z_][A-Z0-9_]*\s*=", t)]
        if env_like:
            n, t = env_like[0]
            name = t.split("=", 1)[0].strip()
            self.error(n, f"environment setting {name}=... inside the block {block.label}: put it "
                          f"above the block (it then applies to every job below it), or set it for "
                          f"this job only with env = {{ {name} = \"...\" }}")
            return {}
        raw = self.parse_toml(block) if parsed is None else parsed
        if isinstance(raw, tomllib.TOMLDecodeError):
            message = str(raw)
            m = re.search(r"\(at line (\d+), column (\d+)\)", message)
            line = first + int(m.group(1)) - 1 if m else last
            reason = re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)", "", message)
            text = next((t for n, t in block.body if n == line), "")
            self.error(line, f"in {block.label}: invalid TOML: {_explain_toml(reason, text)}")
            return {}
        result: dict[str, tuple[Any, int]] = {}
        for key, value in raw.items():
            line = self.key_line(block, key)
            if key not in options.SPECS:
                hint = suggest.did_you_mean(key, options.SPECS, n=1, quote=True) or (
                    f"; known options: {', '.join(options.SPECS)}")
                self.error(line, f"unknown option {key!r} in {block.label}{hint}")
                continue
            try:
                result[key] = (options.convert(key, value), line)
            except ValueError as e:
                self.error(line, f"{key}: {e}")
        return result

    @staticmethod
    def key_line(block: _Block, key: str) -> int:
        """The line `key` (bare or quoted) is set on, as `\\s*KEY\\s*[=.]` would match it
        (string tests: a pattern compiled per key was a tenth of a 1,000-job file's load)."""
        if key[:1].isspace():  # a quoted key " a": the pattern's \s* may stop short of it
            pattern = re.compile(r"\s*(" + re.escape(key) + r"|\"" + re.escape(key) + r"\"|'"
                                 + re.escape(key) + r"')\s*[=.]")
            return next((number for number, text in block.body if pattern.match(text)), block.line)
        for number, text in block.body:
            stripped = text.lstrip()
            for spelt in (key, f'"{key}"', f"'{key}'"):
                if stripped.startswith(spelt) and stripped[len(spelt):].lstrip()[:1] in ("=", "."):
                    return number
        return block.line

    def schedule_line(self, number: int, text: str, block: _Block | None,
                      values: dict[str, tuple[Any, int]]) -> None:
        try:
            schedule, user, command = split_schedule_line(text, self.system)
        except ScheduleError as e:
            self.error(number, str(e))
            return
        if self.cron and isinstance(schedule, (AfterJobs, Every)):
            self.error(number, f"{schedule.text.split()[0]} is cronsup's, not cron's: cron would "
                               "reject this file; put the job in the jobs file")
            return
        if isinstance(schedule, Cron) and (why := never_fires(schedule)):
            # Cron keeps such a line, and admins use it to keep a job in the file but off.
            self.warn(number, f"{why}; the job is kept but never runs by its schedule")
        merged = dict(self.defaults)
        merged.update(values)
        self.entries.append(_Entry(
            line=number, schedule=schedule, user=user, raw_command=command,
            environment=list(self.env.items()), options=merged,
            name=block.name if block is not None else None,
            header_line=block.line if block is not None else None))

    # -- whole-file checks ---------------------------------------------------------------

    def finish(self) -> list[JobSpec]:
        named = names.assign(
            [(e.name, split_percent(e.raw_command)[0], f"{e.schedule.text} {e.raw_command}")
             for e in self.entries])
        jobs = []
        for entry, name in zip(self.entries, named):
            job = self.build(entry, name)
            if job is not None:
                jobs.append(job)
        self.check_after(jobs)
        return jobs

    def build(self, e: _Entry, name: str) -> JobSpec | None:
        opts = {k: v for k, (v, _) in e.options.items()}
        env = dict(e.environment)
        env.update(opts.pop("env", {}))
        if e.user is not None:
            if "user" in opts and opts["user"] != e.user:
                self.error(e.options["user"][1], f"user: the schedule line at line {e.line} "
                                                 f"names user {e.user!r} already")
            opts["user"] = e.user
        timezone = opts.pop("timezone", None) or env.get("CRON_TZ") or None
        shell = opts.pop("shell", None) or env.get("SHELL") or "/bin/sh"
        mailto = opts.pop("mailto", None)
        if mailto is None:
            mailto = env.get("MAILTO")
        command, stdin = split_percent(e.raw_command)
        if len(command.encode("utf-8", "surrogateescape")) > options.MAX_ARG:
            self.error(e.line, f"the command is too long to run: at most {options.MAX_ARG} bytes "
                               "(put it in a script)")
            return None
        is_after = isinstance(e.schedule, AfterJobs)
        after = opts.get("after", ())
        if is_after and not after:
            self.error(e.line, f"job {name!r} is @after but has no 'after' option; add a "
                               f"[job.{name}] block with after = [\"JOB\", ...] above it")
            return None
        if after and not is_after:
            self.error(e.options["after"][1], f"after: job {name!r} has a schedule "
                                              f"({e.schedule.text}); 'after' needs the "
                                              "schedule line to be @after")
            return None
        return JobSpec(
            name=name, schedule=e.schedule, command=command, stdin=stdin, line=e.line,
            raw_command=e.raw_command, environment=tuple(env.items()), shell=shell,
            timezone=timezone, mailto=mailto, auto_named=e.name is None, **opts)

    def check_after(self, jobs: list[JobSpec]) -> None:
        by_name = {j.name: j for j in jobs}
        entry_lines = {}
        for e in self.entries:
            if "after" in e.options:
                entry_lines[e.line] = e.options["after"][1]
        for job in jobs:
            line = entry_lines.get(job.line, job.line)
            for dep in job.after:
                if dep == job.name:
                    self.error(line, f"after: job {job.name!r} cannot wait for itself")
                elif dep not in by_name:
                    hint = suggest.did_you_mean(dep, by_name, n=1, quote=True)
                    self.error(line, f"after: no job named {dep!r}{hint}")
        reported: set[str] = set()
        for job in jobs:
            cycle = _find_cycle(job.name, by_name)
            if cycle and not reported & set(cycle):
                reported |= set(cycle)
                line = entry_lines.get(job.line, job.line)
                self.error(line, "after: dependency cycle " + " -> ".join(cycle))


# Options whose TOML value is not a string, with an example for the error message.
_NOT_STRINGS = {"retries": "3", "retry_backoff": "2.0", "retry_jitter": "false", "enabled": "false",
                "success_codes": "[0, 1]", "after": '["backup"]', "env": '{ KEY = "value" }'}


def _explain_toml(reason: str, text: str) -> str:
    """tomllib's terse message, said in terms of the option on the line."""
    m = re.match(r"\s*([A-Za-z0-9_.\"'-]+)\s*=", text)
    key = m.group(1).strip("\"'") if m else None
    if reason == "Cannot overwrite a value" and key:
        return f"{key!r} is set twice in this block"
    if reason.startswith("Illegal character") or reason.startswith("Unterminated string"):
        return f"{reason}: a string is not closed (a missing quote?)"
    if reason in ("Invalid value", "Expected newline or end of document after a statement") and key:
        if key in _NOT_STRINGS:  # `retries = two`: quotes would only lead to the next error
            return f"invalid value for {key!r}: write it as in {key} = {_NOT_STRINGS[key]}"
        return f"invalid value for {key!r}: strings need quotes, as in {key} = \"...\""
    if reason.startswith("Expected '=' after a key"):
        return f"{reason}: an option is written KEY = VALUE"
    return reason


def _unfinished(error: tomllib.TOMLDecodeError, block: _Block) -> bool:
    """True when the TOML stops inside an array, table or string that a later line closes."""
    if "end of document" not in str(error):
        return False
    body = [t.rstrip() for _, t in block.body if t.strip() and not t.strip().startswith("#")]
    return bool(body) and (str(error).startswith(("Unclosed", "Unterminated"))
                           or body[-1].endswith(("[", "{", ",")))


def _find_cycle(start: str, by_name: dict[str, JobSpec]) -> list[str] | None:
    """A path start -> ... -> start through `after`, if there is one."""
    stack = [(start, [start])]
    seen = set()
    while stack:
        name, path = stack.pop()
        job = by_name.get(name)
        if job is None:
            continue
        for dep in job.after:
            if dep == start and len(path) > 1:
                return path + [start]
            if dep not in seen and dep != start:
                seen.add(dep)
                stack.append((dep, path + [dep]))
    return None


def split_schedule_line(text: str, system: bool = False) -> tuple[Schedule, str | None, str]:
    """`0 2 * * * [user] command` to (schedule, user or None, command as written)."""
    if text.startswith("@"):
        keyword = text.split(None, 1)[0]
        count = 2 if keyword == "@every" else 1
        if keyword not in KEYWORDS:
            hint = suggest.keyword_hint(keyword, KEYWORDS)
            raise ScheduleError(f"unknown keyword {excerpt(keyword)}{hint}; known: "
                                f"{' '.join(KEYWORDS)}")
    else:
        count = 5
    parts = text.split(None, count + (1 if system else 0))
    schedule = " ".join(parts[:count])
    if len(parts) < count and not text.startswith("@"):
        raise ScheduleError(f"{excerpt(text)}: a schedule line needs 5 time fields (minute hour "
                            "day-of-month month day-of-week), then "
                            + ("a user and " if system else "") + "a command")
    parsed = parse_schedule(schedule)  # a bad schedule is the first thing to report
    if len(parts) < count + (2 if system else 1):
        what = "a user and a command" if system and len(parts) <= count else "a command"
        raise ScheduleError(f"{excerpt(text)}: {what} must follow the schedule "
                            f"{excerpt(schedule)}")
    user = parts[count] if system else None
    command = parts[-1]
    if count == 5:
        sixth = user if system else command.split(None, 1)[0]
        if _FIELD_LIKE.fullmatch(sixth):
            raise ScheduleError(
                f"6 time fields ({excerpt(schedule + ' ' + sixth)}): cron has no seconds field; "
                "write minute hour day-of-month month day-of-week, then "
                + ("the user and " if system else "") + "the command")
    if system and not re.fullmatch(r"[A-Za-z0-9_.][A-Za-z0-9_.-]*\$?", user or ""):
        raise ScheduleError(f"{excerpt(user or '')} is not a user name (system format: the user "
                            "comes after the 5 time fields)")
    return parsed, user, command


def split_percent(command: str) -> tuple[str, str | None]:
    """Cron's % rule: the first unescaped % ends the command; the rest is standard input
    with each unescaped % turned into a newline. `\\%` is a literal % in both parts.

    >>> split_percent(r"mail -s 'at 10\\%' joe%Joe,%%Where are you?%")
    ("mail -s 'at 10%' joe", 'Joe,\\n\\nWhere are you?\\n')
    """
    if "%" not in command:
        return command, None
    out: list[str] = []
    stdin: list[str] | None = None
    target = out
    i = 0
    while i < len(command):
        ch = command[i]
        if ch == "\\" and i + 1 < len(command) and command[i + 1] == "%":
            target.append("%")
            i += 2
            continue
        if ch == "%":
            if stdin is None:
                stdin = []
                target = stdin
            else:
                target.append("\n")
        else:
            target.append(ch)
        i += 1
    return "".join(out), ("".join(stdin) if stdin is not None else None)


def parse_env_assignment(text: str) -> tuple[str, str] | None:
    """crontab(5)'s `name = value`: blanks around '=' allowed, the value optionally in
    matching single or double quotes (kept verbatim inside); unquoted values lose their
    trailing blanks. None when the line is not an assignment."""
    m = re.match(r"""(?:"([^"]*)"|'([^']*)'|([^\s='"]+))\s*=\s*""", text)
    if not m:
        return None
    name = next(g for g in m.groups() if g is not None)
    if not name:
        return None
    value = text[m.end():]
    if value[:1] in ("'", '"'):
        quote = value[0]
        end = value.find(quote, 1)
        if end < 0 or value[end + 1:].strip():
            return None
        return name, value[1:end]
    return name, value.rstrip(" \t")
