"""Whatever `check` accepts, the daemon can start or refuse: random option values and
environment lines, then every job of every file that parses is spawned for real, and the
only failure allowed is a SpawnError (which the daemon records as an `error` run)."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cronsup import jobsfile, runner
from cronsup.runner import SpawnError
from test_runner import run_to_end

ROOT = os.geteuid() == 0


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    base = tmp_path_factory.mktemp("fuzz")
    (base / "dir").mkdir()
    (base / "private").mkdir(mode=0o700)
    (base / "file").write_text("")
    (base / "script").write_text("#!/bin/sh\n")  # not executable
    (base / "link").symlink_to(base / "dir")
    (base / "loop").symlink_to(base / "loop")
    return [str(base / name) for name in ("dir", "private", "file", "script", "link", "loop", "gone")]


def toml_string(text: str) -> str:
    """`text` as a TOML basic string: control characters (NUL included) as escapes."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


ANY_TEXT = st.text(st.sampled_from("\0=/ \t\n$%\\\"'\u00e9\x7f") | st.characters(exclude_categories=("Cs",)),
                   max_size=20)
LINE_TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\n\r\0"), max_size=20)


def paths(places: list[str]):
    fixed = ["/", "/tmp", "/bin/sh", "/bin/bash", "/no/such", "relative", "", "/" + "x" * 300,
             "/" + "a/" * 2100, "/tmp/\0x", "/\u00e9t\u00e9"]
    known = st.sampled_from(places + fixed)
    absolute = ANY_TEXT.map(lambda text: "/" + text)
    return st.one_of(known, known, absolute, ANY_TEXT)  # mostly values worth trying


USERS = st.sampled_from(["root", "nobody", "nobody", "no-such-user-cronsup", "", "no body", "a" * 300,
                         "nobody\0", "$", "0", "a$", "-x", ".."])
COMMANDS = st.sampled_from(["true", "exit 3", "echo $HOME; pwd", "cat%line one%two", "true%",
                            "true #" + "x" * 200_000, "id -u"])


@st.composite
def jobs_files(draw, places: list[str]) -> str:
    lines = []
    for _ in range(draw(st.integers(0, 3))):  # environment lines, as in a crontab
        name = draw(st.sampled_from(["SHELL", "HOME", "PATH", "MAILTO", "CRON_TZ", "X", '"A=B"',
                                     "'sp ace'", '"\u00e9"']))
        value = draw(paths(places).filter(lambda v: not any(c in v for c in "\n\r\0")) | LINE_TEXT)
        lines.append(f"{name}={value}")
    for i in range(draw(st.integers(1, 3))):
        lines.append(f"[job.j{i}]")
        if draw(st.booleans()):
            lines.append(f"workdir = {toml_string(draw(paths(places)))}")
        if draw(st.booleans()):
            lines.append(f"shell = {toml_string(draw(paths(places)))}")
        if ROOT and draw(st.booleans()):
            lines.append(f"user = {toml_string(draw(USERS))}")
        if draw(st.booleans()):
            env = draw(st.dictionaries(st.sampled_from(["SHELL", "CRON_TZ", "HOME", "K"]) | ANY_TEXT,
                                       paths(places) | ANY_TEXT, max_size=3))
            lines.append("env = { " + ", ".join(f"{toml_string(k)} = {toml_string(v)}"
                                                for k, v in env.items()) + " }")
        if draw(st.booleans()):
            lines.append(f"output_limit = {draw(st.integers(0, 2048))}")
        lines.append(f"@every 1h {draw(COMMANDS)}")
    return "\n".join(lines) + "\n"


def test_every_job_of_a_valid_file_starts_or_is_a_spawn_error(places):
    seen = {"parsed": 0, "started": 0, "refused": 0}

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(jobs_files(places))
    def check(text: str) -> None:
        try:
            jf = jobsfile.parse(text, "jobs")
        except jobsfile.JobsfileErrors:
            return
        seen["parsed"] += 1
        for job in jf.jobs:
            try:
                child = runner.spawn(job, run_id=1)
            except SpawnError as e:
                assert e.reason and "\n" not in e.reason
                seen["refused"] += 1
                continue
            run_to_end(child)
            seen["started"] += 1

    check()
    assert all(seen.values()), seen  # the search reached both outcomes
