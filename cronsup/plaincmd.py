"""Whether a job's command is one that /bin/sh would only split into words and exec."""

from __future__ import annotations

import os
import re
import stat

# Words of characters that no POSIX shell (dash, bash, busybox ash) treats specially,
# separated by blanks. Everything else (quotes, backslashes, $, `, globs, ~, ;, &, |,
# redirects, parentheses, braces, #, !, %, newlines, non-ASCII) leaves the command to the
# shell. `=` is literal in a word after the command name; in the first word it could make an
# assignment, so it is not allowed there.
_PLAIN = re.compile(r"[ \t]*[A-Za-z0-9/._+,@:-]+(?:[ \t]+[A-Za-z0-9/._+,@:=-]+)*[ \t]*")

# A first word the shell runs itself: reserved words and the builtins of dash, bash and
# busybox ash (a builtin may differ from the program of the same name, as echo does).
_SHELL_WORDS = frozenset("""
    if then else elif fi case esac for select while until do done in function time coproc
    . : alias bg bind break builtin caller cd chdir command compgen complete compopt continue
    declare dirs disown echo enable eval exec exit export false fc fg getopts hash help
    history jobs kill let local logout mapfile newgrp popd printf pushd pwd read readarray
    readonly return set shift shopt source suspend test times trap true type typeset ulimit
    umask unalias unset wait
""".split())

# Variables a bash /bin/sh would act on before running the command (imported functions,
# options); dash, which exports PWD itself, keeps one set by the jobs file only if it is right.
_SHELL_VARS = ("BASH_FUNC_", "SHELLOPTS", "BASHOPTS", "PWD")

SH = "/bin/sh"


def plain_words(command: str) -> list[str] | None:
    """The argv /bin/sh would exec for `command`, or None if the shell may do more with it.

    "/usr/bin/backup --all" -> ["/usr/bin/backup", "--all"]; "echo hi", "cd /x", "a > b",
    "ls *", "X=1 cmd" -> None.
    """
    if not _PLAIN.fullmatch(command):
        return None
    words = command.split()  # only blanks can separate words here
    if words[0] in _SHELL_WORDS:
        return None
    return words


def find_program(name: str, path: str) -> str | None:
    """The file /bin/sh would exec for command `name` with this PATH, or None to let it look.

    As dash does: a name with a slash is used as it is; otherwise the first regular file
    named so in a PATH directory. None when nothing is found (the shell then says "not
    found" and exits 127) or when PATH has a relative or empty entry (relative to the job's
    directory, not the daemon's) or dash's `%` notation.
    """
    if "/" in name:
        return name
    if "%" in path:
        return None
    for folder in path.split(":"):
        if not folder.startswith("/"):
            return None
        full = folder + "/" + name if not folder.endswith("/") else folder + name
        try:
            st = os.stat(full)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            return full
    return None


def direct(shell: str, command: str, env: dict[str, str]) -> tuple[str, list[str]] | None:
    """(executable, argv) to run the job without its shell, or None to run `shell -c`.

    Only for the default shell: SHELL=/bin/bash (or any other) keeps its shell, whose
    startup may do more than dash's.
    """
    if shell != SH:
        return None
    words = plain_words(command)
    if words is None:
        return None
    for key in env:
        if key.startswith(_SHELL_VARS):
            return None
    program = find_program(words[0], env.get("PATH", ""))
    if program is None:
        return None
    return program, words
