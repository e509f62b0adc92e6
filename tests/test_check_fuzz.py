"""`check` never raises, never hangs and exits 0 or 1, whatever the file holds."""

import glob
import os
import random

from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cronsup import cli
from cronsup.jobsfile import JobsfileErrors, parse_bytes

HERE = os.path.dirname(__file__)
SEEDS = [open(p, "rb").read() for p in sorted(glob.glob(os.path.join(HERE, "data", "debian", "*", "*")))
         if not p.endswith(".md")]
SEEDS.append(b"""SHELL=/bin/bash
CRON_TZ=Europe/Berlin
[defaults]
timeout = "1h"
*/5 * * * * /usr/local/bin/poll-queue --fast
[job.backup]
retries = 3
retry_delay = "2m"
env = { A = "1" }
success_codes = [
  0,
  2,
]
0 2 * * * /usr/local/bin/backup --all%stdin%more
[job.report]
after = ["backup"]
@after /usr/local/bin/report --mail
@every 90s /bin/true
@reboot /bin/boot
""")
TOKENS = [b"*/0", b"5/10", b"30-10", b"L", b"#", b"?", b"[job.x]", b"[defaults]", b"[job.", b"]",
          b"%", b"\\%", b'"', b"'", b"=", b"\r", b"\x00", b"\xff\xfe", b"\xef\xbb\xbf", b"\n",
          b"after = [\"backup\"]", b"after = [\"report\"]", b"@after", b"@every", b"@every 0s",
          b"retries = -1", b"timeout = ", b"[[x]]", b"{", b"\"\"\"", b"FOO=bar", b"7", b"*", b"@",
          b"sun-sat", b"fri-0", b"99999999999999999999", b"-", b",", b"/", b"\t", b"x" * 5000]


def _mutate(rng: random.Random, data: bytes) -> bytes:
    for _ in range(rng.randint(1, 6)):
        pos = rng.randint(0, len(data))
        op = rng.random()
        if op < 0.45:
            data = data[:pos] + rng.choice(TOKENS) + data[pos:]
        elif op < 0.7:
            data = data[:pos] + data[pos + rng.randint(1, 20):]
        elif op < 0.85:
            lines = data.split(b"\n")
            rng.shuffle(lines)
            data = b"\n".join(lines)
        else:
            data = data[:pos] + bytes([rng.randint(0, 255)]) + data[pos:]
    return data


def _check(data: bytes) -> None:
    try:
        parse_bytes(data, "jobs")
    except JobsfileErrors as e:
        assert e.errors
        lines = data.count(b"\n") + 1
        for error in e.errors:
            assert 1 <= error.line <= lines, (error.line, lines)
            assert error.message and len(error.message) < 1000


def test_seeded_mutations_of_real_files_never_raise_anything_but_jobsfile_errors():
    rng = random.Random(20261126)
    for _ in range(3000):
        _check(_mutate(rng, rng.choice(SEEDS)))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(TOKENS) | st.binary(max_size=12), max_size=40))
def test_any_token_soup_never_raises_anything_but_jobsfile_errors(parts):
    _check(b" ".join(parts))


def test_the_check_command_exits_0_or_1_on_mutated_files(tmp_path):
    rng = random.Random(7)
    runner = CliRunner()
    path = tmp_path / "jobs"
    codes = set()
    for _ in range(150):
        path.write_bytes(_mutate(rng, rng.choice(SEEDS)))
        result = runner.invoke(cli.main, ["check", str(path)])
        assert result.exception is None or isinstance(result.exception, SystemExit), result.output
        assert result.exit_code in (0, 1)
        assert "Traceback" not in result.output
        codes.add(result.exit_code)
    assert codes == {0, 1}
