"""The control socket under fuzzing, against the real daemon: whatever arrives (random and
structured JSON, deep nesting, huge numbers, wrong types, binary, half lines, oversized
lines, clients that never finish), the daemon answers or hangs up, never stops, and its
scheduled starts stay on time meanwhile."""

from __future__ import annotations

import json
import random
import socket
import string
import time

from conftest import DaemonProcess
from test_control import read_line
from cronsup import control, paths

FUZZ_SECONDS = 8.0
LATE = 0.5  # a scheduled start may be this late while the fuzz runs (on a busy 2-core box)
SEED = 20261201
NAME_CHARS = string.ascii_letters + string.digits + "_-"
OPS = ["ping", "run", "reload", "pause", "resume", "exec", "", "PING", "ping\n", "run; rm -rf /",
       None, 0, -1, 1.5, True, [], {}, ["ping"], {"op": "ping"}]


def json_value(rng: random.Random, depth: int = 0):
    kind = rng.choice(["int", "big", "float", "str", "bool", "null"] + (["list", "dict"] * 2 if depth < 6 else []))
    if kind == "int":
        return rng.randint(-2**63, 2**63)
    if kind == "big":
        return rng.choice([10**rng.randint(20, 1000), -(10**300), 2**64 + 1])
    if kind == "float":
        return rng.choice([rng.uniform(-1e308, 1e308), float("inf"), float("-inf"), float("nan"), 1e-320, -0.0])
    if kind == "str":
        return "".join(chr(rng.choice([rng.randint(0, 0x7F), rng.randint(0x80, 0x10FFFF)]))
                       for _ in range(rng.randint(0, 40))).replace("\ud800", "")
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "null":
        return None
    if kind == "list":
        return [json_value(rng, depth + 1) for _ in range(rng.randint(0, 5))]
    return {json_value_key(rng): json_value(rng, depth + 1) for _ in range(rng.randint(0, 5))}


def json_value_key(rng: random.Random) -> str:
    return rng.choice(["op", "job", "command", "", "x" * rng.randint(1, 50), "\u2603"])


def job_name(rng: random.Random):
    name = "".join(rng.choice(NAME_CHARS) for _ in range(rng.randint(1, 300)))
    return rng.choice([name, name + " ", "../" + name, "", "a\x00b", "\u00e9t\u00e9", None, 7, [name], {"x": 1}])


def dump(value) -> bytes:
    try:
        return json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass")
    except (ValueError, RecursionError):
        return b"null"


def payload(rng: random.Random) -> tuple[bytes, str]:
    """One thing to send and how: "line" expects an answer, "half" hangs up early,
    "hold" stays open without finishing, "big" is over the size bound."""
    pick = rng.random()
    if pick < 0.25:  # a request of about the right shape, with wrong parts
        request = {"op": rng.choice(OPS)}
        if rng.random() < 0.7:
            request["job"] = job_name(rng)
        if rng.random() < 0.2:
            request[json_value_key(rng)] = json_value(rng)
        if request.get("op") == "reload" and rng.random() < 0.9:
            request["op"] = "ping"  # a valid reload rereads the file: keep those few
        return dump(request) + b"\n", "line"
    if pick < 0.45:
        return dump(json_value(rng)) + b"\n", "line"
    if pick < 0.55:  # deep nesting, as brackets or as real nested values
        n = rng.randint(5, 4000)
        text = rng.choice([b"[" * n, b"{\"a\":" * (n // 5), b"[" * (n // 2) + b"]" * (n // 2),
                           b'{"op": ' + b"[" * (n // 2) + b"]" * (n // 2) + b"}"])
        return text[:control.MAX_REQUEST] + b"\n", "line"
    if pick < 0.62:  # huge and odd numbers
        return rng.choice([b"1" * 4000, b"-" + b"9" * 4000, b"1e999999", b"-1e-999999", b"NaN", b"Infinity",
                           b'{"op": 1e999999}', b'{"op": "run", "job": ' + b"7" * 4000 + b"}",
                           b"0." + b"0" * 4000 + b"1"]) + b"\n", "line"
    if pick < 0.75:  # binary garbage
        data = bytes(rng.randrange(256) for _ in range(rng.randint(0, 600)))
        return data.replace(b"\n", b"") + b"\n", "line"
    if pick < 0.85:  # half a line, then hang up
        whole = dump({"op": rng.choice(["ping", "run"]), "job": "nope"})
        return whole[:rng.randint(0, len(whole) - 1)], "half"
    if pick < 0.93:  # started and never finished
        return bytes(rng.randrange(32, 127) for _ in range(rng.randint(0, 50))), "hold"
    size = rng.randint(control.MAX_REQUEST + 1, 8000)
    return (b"[" * size if rng.random() < 0.5 else b'{"op": "' + b"x" * size + b'"}\n'), "big"


def test_the_daemon_survives_a_fuzzed_control_socket_and_keeps_its_schedule(daemon: DaemonProcess):
    daemon.write("[job.tick]\n@every 1s true\n")
    daemon.start()
    daemon.finished("tick")
    path = paths.control_socket(str(daemon.db))
    rng = random.Random(SEED)
    held: list[socket.socket] = []
    sent, answered = 0, 0
    t0 = time.time()
    deadline = time.monotonic() + FUZZ_SECONDS
    while time.monotonic() < deadline:
        data, how = payload(rng)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        s.settimeout(5)
        sent += 1
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            assert how == "big", data[:100]
        if how == "hold":
            held.append(s)
            if len(held) > 100:
                held.pop(rng.randrange(len(held))).close()
            continue
        if how == "half":
            s.shutdown(socket.SHUT_WR)
        try:
            line = read_line(s)
        except ConnectionResetError:
            assert how == "big", data[:100]
            line = b""
        finally:
            s.close()
        if how == "half":
            assert line == b"", (data, line)
            continue
        if how == "big" and not line:
            continue
        assert line, f"no answer to {data[:100]!r}; the daemon's log:\n{daemon.output()[-3000:]}"
        answer = json.loads(line)
        answered += 1
        assert isinstance(answer, dict) and isinstance(answer["ok"], bool), (data[:100], answer)
        assert not answer.get("error", "").startswith("internal error"), (data[:100], answer)
        if not answer["ok"]:
            assert answer["error"].startswith(("malformed request", "request larger", "busy")) \
                or answer.get("kind") == "unknown_job", (data[:100], answer)
    t1 = time.time()
    for s in held:
        s.close()
    assert daemon.proc.poll() is None, daemon.output()
    assert control.request(path, "ping")["pid"] == daemon.proc.pid
    assert sent > 500 and answered > sent / 3, (sent, answered)
    output = daemon.output()
    assert "Traceback" not in output and "internal error" not in output
    # The log is not flooded: the tick's own lines and a few held-back counts.
    assert len(output.splitlines()) < 4 * FUZZ_SECONDS + 40, output[-3000:]
    # On time: every second of the fuzz has its start, none late.
    daemon.finished("tick", len(daemon.finished("tick")) + 1)
    runs = [r for r in daemon.runs("tick") if t0 + 1 <= r.scheduled_for <= t1 - 1]
    assert len(runs) >= FUZZ_SECONDS - 3
    gaps = [b.scheduled_for - a.scheduled_for for a, b in zip(runs, runs[1:])]
    assert all(abs(g - 1.0) < 0.01 for g in gaps), gaps
    late = [r.started_at - r.scheduled_for for r in runs]
    assert max(late) < LATE, late
