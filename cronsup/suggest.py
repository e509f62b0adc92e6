""""Did you mean ...?" for every unknown name: jobs, options, keywords, choices, zones.

One rule everywhere, so a hint is only given when it is likely what was meant: the same word
in other capitals, a name it begins (`back` for `backup-db`), a name sharing all but its last
letter (`retry` for `retries`), or one a few typing slips away (a letter left out, added,
changed, or two neighbours swapped), one slip allowed per three letters.
"""

from __future__ import annotations

from collections.abc import Iterable


def close_names(word: str, names: Iterable[str], n: int = 3) -> list[str]:
    """The names `word` most likely meant, closest first; [] when none is close.

    >>> close_names("@daly", ["@daily", "@hourly", "@weekly"])
    ['@daily']
    >>> close_names("nosuchjob", ["backup", "report"])
    []
    """
    key = word.lower()
    scored = []
    for index, name in enumerate(dict.fromkeys(names)):
        if name == word:
            continue
        other = name.lower()
        if other == key:
            score = 0
        elif len(key) >= 3 and other.startswith(key):
            score = 1
        elif len(key) >= 5 and other.startswith(key[:-1]):
            score = 2
        else:
            limit = max(1, len(key) // 3) if len(key) >= 3 else 0  # "x" is no word to guess from
            distance = _slips(key, other, limit)
            if distance > limit:
                continue
            score = distance
        scored.append((score, index, name))
    return [name for _, _, name in sorted(scored)[:n]]


def did_you_mean(word: str, names: Iterable[str], *, n: int = 3, quote: bool = False) -> str:
    """'; did you mean backup?' (or 'backup', 'backups' with `quote`), or '' when none is close."""
    close = close_names(word, names, n)
    if not close:
        return ""
    shown = ", ".join(repr(name) if quote else name for name in close)
    return f"; did you mean {shown}?"


def keyword_hint(word: str, keywords: Iterable[str]) -> str:
    """' (keywords are lowercase)' or " (did you mean '@daily'?)" for an unknown @keyword."""
    keywords = tuple(keywords)
    if word.lower() in keywords:  # case-sensitive, as in Debian's cron
        return " (keywords are lowercase)"
    close = close_names(word, keywords, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _slips(a: str, b: str, limit: int) -> int:
    """Edits (insert, delete, change, swap two neighbours) from a to b; above `limit` once
    it is sure to exceed it."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                current[j] = min(current[j], previous2[j - 2] + 1)
        if min(current) > limit:
            return limit + 1
        previous2, previous = previous, current
    return previous[-1]
