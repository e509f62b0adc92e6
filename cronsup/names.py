"""Job names for plain crontab lines: taken from the program each line runs."""

from __future__ import annotations

import hashlib
import os
import re

_SEPARATORS = {"&&", "||", ";", "|", "&", "|&", ";;", "\n"}
_KEYWORDS = {"if", "then", "else", "elif", "fi", "while", "until", "do", "done", "time",
             "exec", "command", "builtin", "nohup", "setsid", "chronic", "run-one", "eval"}
# Commands that only set the scene for the real one: skip them and their arguments.
_CLAUSES = {"test", "[", "[[", "cd", "pushd", "true", "false", ":", "export", "set", "umask",
            "ulimit", "sleep", "source", ".", "unset", "trap", "mkdir"}
# Wrappers that run the program given after their options. The value is the set of
# options that take an argument, and how many positional arguments come before the program.
_WRAPPERS: dict[str, tuple[frozenset[str], int]] = {
    "nice": (frozenset({"-n", "--adjustment"}), 0),
    "ionice": (frozenset({"-c", "-n", "-p", "-P", "-u", "--class", "--classdata"}), 0),
    "timeout": (frozenset({"-s", "-k", "--signal", "--kill-after"}), 1),
    "flock": (frozenset({"-w", "-E", "--timeout", "--wait", "--conflict-exit-code"}), 1),
    "lckdo": (frozenset({"-w"}), 1),
    "sudo": (frozenset({"-u", "-g", "-C", "-D", "-h", "-p", "-r", "-t", "-U"}), 0),
    "stdbuf": (frozenset({"-i", "-o", "-e"}), 0),
    "env": (frozenset({"-u", "-C", "--unset", "--chdir"}), 0),
    "taskset": (frozenset(), 1),
    "chrt": (frozenset(), 1),
    "xargs": (frozenset({"-n", "-P", "-I", "-d", "-a", "-L", "-s", "-E"}), 0),
}
_SHELLS = {"sh", "bash", "dash", "zsh", "ksh"}
_INTERPRETERS = {"python", "python2", "python3", "perl", "ruby", "php", "node", "nodejs",
                 "Rscript", "lua", "tclsh"} | _SHELLS
_EXTENSIONS = (".sh", ".bash", ".py", ".pl", ".rb", ".php", ".js", ".lua", ".tcl", ".R")
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")


_TOKEN = re.compile(r"""&&|\|\||;;|\|&|[;&|]|[<>]+&?|(?:[^\s;&|<>'"]+|'[^']*'|"(?:\\.|[^"\\])*")+""")


def _tokens(command: str) -> list[str]:
    """Shell words, roughly: quotes removed, operators apart. Enough to find a program."""
    return [t.replace("'", "").replace('"', "") if t[0] not in "<>" else t
            for t in _TOKEN.findall(command)]


def _program(tokens: list[str]) -> str | None:
    i = 0
    while i < len(tokens):
        word = tokens[i].lstrip("({!").rstrip(")}")  # subshells, groups, negation: look inside
        base = os.path.basename(word)
        following = tokens[i + 1] if i + 1 < len(tokens) else ""
        if base == "command" and following in ("-v", "-V"):
            i += 2  # `command -v prog` only tests for prog
            while i < len(tokens) and tokens[i] not in _SEPARATORS:
                i += 1
        elif not word or word in _SEPARATORS or word in _KEYWORDS or _ASSIGNMENT.match(word):
            i += 1
        elif word[0] in "<>":
            i += 2  # a redirection and its target
        elif word.isdigit() and following[:1] in ("<", ">"):
            i += 3  # 2>&1, 2> file
        elif word.startswith("$("):
            i += 1  # a command substitution: not the program itself
        elif base in _CLAUSES:
            i += 1
            while i < len(tokens) and tokens[i] not in _SEPARATORS:
                i += 1
        elif base in _WRAPPERS:
            takes_value, positional = _WRAPPERS[base]
            i = _skip_options(tokens, i + 1, takes_value)
            i += positional
        elif base in _INTERPRETERS:
            j = _skip_options(tokens, i + 1, frozenset({"-m", "-c", "-e", "-W", "-X", "-o", "-O"}),
                              stop_at={"-m", "-c", "-e"})
            if j < len(tokens) and tokens[j] in ("-c", "-e") and j + 1 < len(tokens):
                if base in _SHELLS and tokens[j] == "-c":
                    return _program(_tokens(tokens[j + 1]))
                # Inline code (`perl -e 'sleep int(rand(3600))'`) sets the scene, like sleep:
                # the program to name the job after comes next, if there is one.
                i = j + 2
                while i < len(tokens) and tokens[i] not in _SEPARATORS:
                    i += 1
                if i < len(tokens):
                    continue
                return base
            if j < len(tokens) and tokens[j] == "-m" and j + 1 < len(tokens):
                return tokens[j + 1].rsplit(".", 1)[-1]
            if j < len(tokens) and tokens[j] not in _SEPARATORS:
                return os.path.basename(tokens[j])
            return base
        else:
            return base
    return None


def _skip_options(tokens: list[str], i: int, takes_value: frozenset[str],
                  stop_at: set[str] | None = None) -> int:
    while i < len(tokens) and tokens[i].startswith("-") and tokens[i] != "-":
        if stop_at and tokens[i] in stop_at:
            return i
        i += 2 if tokens[i] in takes_value else 1
    return i


def derive(command: str) -> str:
    """The name a plain line gets from its command.

    >>> derive("cd / && run-parts --report /etc/cron.daily")
    'run-parts'
    >>> derive("[ -x /usr/lib/php/sessionclean ] && /usr/lib/php/sessionclean")
    'sessionclean'
    """
    program = _program(_tokens(command)) or ""
    for ext in _EXTENSIONS:
        if program.endswith(ext) and len(program) > len(ext):
            program = program[: -len(ext)]
            break
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", program).strip("-")
    return name[:60] or "job"


def readable(command: str) -> str:
    """The name a person would give the line, for `cronsup import` (which pins it): the
    program's name, plus what tells its lines apart.

    >>> readable("cd / && run-parts --report /etc/cron.daily")
    'cron-daily'
    >>> readable("command -v debian-sa1 > /dev/null && debian-sa1 1 1")
    'sa1'
    >>> readable("cd /srv/app && python manage.py cleanup --days 3")
    'manage-cleanup'
    """
    base = derive(command)
    tokens = _tokens(command)
    if base == "run-parts":  # named after the directory it runs: cron.daily -> cron-daily
        where = _after_program(tokens, "run-parts", _RUN_PARTS_VALUED)
        if where:
            return _clean(os.path.basename(where.rstrip("/"))) or base
    if base in ("invoke-rc-d", "service"):  # named after the service it starts
        service = _after_program(tokens, "invoke-rc.d" if base == "invoke-rc-d" else base,
                                 frozenset())
        if service and not service.startswith("$"):
            return _clean(service) or base
    if base.startswith("debian-") and len(base) > len("debian-"):
        return base[len("debian-"):]  # Debian's wrapper of the program: debian-sa1 runs sa1
    for i, token in enumerate(tokens[:-1]):
        # A script run by an interpreter, and its subcommand: `python manage.py cleanup`.
        if _stem(os.path.basename(token)) == base and any(
                os.path.basename(t) in _INTERPRETERS for t in tokens[:i]):
            sub = tokens[i + 1]
            if re.fullmatch(r"[A-Za-z][A-Za-z0-9_:.-]*", sub):
                return _clean(f"{base}-{sub}")
            break
    return base


_RUN_PARTS_VALUED = frozenset({"-u", "--umask", "--arg", "-a", "--regex"})


def _after_program(tokens: list[str], program: str, takes_value: frozenset[str]) -> str | None:
    """The first argument after `program`'s options."""
    for i, token in enumerate(tokens):
        if os.path.basename(token) == program:
            j = _skip_options(tokens, i + 1, takes_value)
            if j < len(tokens) and tokens[j] not in _SEPARATORS and tokens[j][0] not in "<>":
                return tokens[j]
    return None


def _stem(program: str) -> str:
    for ext in _EXTENSIONS:
        if program.endswith(ext) and len(program) > len(ext):
            return program[: -len(ext)]
    return program


def _clean(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-")[:60]


def assign(entries: list[tuple[str | None, str, str]], *, readable_names: bool = False,
           prefixes: list[str] | None = None) -> list[str]:
    """Names for (pinned name or None, command, line text) entries, in file order.

    A pinned name is kept. Otherwise the first line to want a name gets it, and a later
    line that wants the same name gets a suffix derived from its own text, so the name of
    a line never depends on where other lines are or what they say. With `readable_names`
    (import), names come from `readable`, and the suffix is the line's time of day when it
    has one ("sa1-2359"), else the digest. `prefixes` (one per entry) start the names
    wanted: a user crontab's jobs are "alice-backup".
    """
    taken = {pinned for pinned, _, _ in entries if pinned}
    result = []
    for i, (pinned, command, text) in enumerate(entries):
        if pinned:
            result.append(pinned)
            continue
        base = readable(command) if readable_names else derive(command)
        if prefixes and prefixes[i]:
            base = _clean(prefixes[i] + base)
        name = base
        if name in taken and readable_names and (when := _time_of_day(text)):
            name = f"{base}-{when}"
        if name in taken:
            digest = hashlib.sha1(" ".join(text.split()).encode()).hexdigest()
            name = f"{base}-{digest[:4]}"
            n = 2
            while name in taken:
                name = f"{base}-{digest[:4]}-{n}"
                n += 1
        taken.add(name)
        result.append(name)
    return result


_MACRO_WORDS = {"@yearly": "yearly", "@annually": "yearly", "@monthly": "monthly",
                "@weekly": "weekly", "@daily": "daily", "@midnight": "daily",
                "@hourly": "hourly", "@reboot": "reboot"}


def _time_of_day(text: str) -> str | None:
    """'2359' for a line `59 23 * * * ...`, 'daily' for `@daily ...`; None otherwise."""
    fields = text.split()
    if fields and fields[0] in _MACRO_WORDS:
        return _MACRO_WORDS[fields[0]]
    if len(fields) >= 2 and fields[0].isdigit() and fields[1].isdigit():
        return f"{int(fields[1]):02d}{int(fields[0]):02d}"
    return None
