#!/usr/bin/env python3
"""A stand-in for systemctl (systemd cannot run as PID 1 here): it keeps each unit's state in
$FAKE_SYSTEMCTL_STATE (JSON: unit -> {"enabled": word, "active": bool}), appends every call to
$FAKE_SYSTEMCTL_STATE.calls, refuses what systemd refuses (starting or enabling a masked or
unknown unit), and fails a call listed in the state's "fail" list, for tests of error paths."""

import json
import os
import sys

path = os.environ["FAKE_SYSTEMCTL_STATE"]
with open(path) as f:
    state = json.load(f)
args = [a for a in sys.argv[1:] if not a.startswith("-")]
with open(path + ".calls", "a") as f:
    f.write(" ".join(sys.argv[1:]) + "\n")
verb, units = args[0], args[1:]
if " ".join(args) in state.get("fail", []):
    print(f"Failed to {verb} {' '.join(units)}: the test said so", file=sys.stderr)
    sys.exit(1)
if verb == "daemon-reload":
    sys.exit(0)
unit = units[0]
known = state["units"].get(unit)
if verb == "is-enabled":
    if known is None:
        print(f"Failed to get unit file state for {unit}: No such file or directory", file=sys.stderr)
        sys.exit(1)
    print(known["enabled"])
    sys.exit(0 if known["enabled"] in ("enabled", "static") else 1)
if verb == "is-active":
    if "--quiet" not in sys.argv:
        print("active" if known and known["active"] else "inactive")
    sys.exit(0 if known and known["active"] else 3)
if known is None:
    print(f"Failed to {verb} {unit}: Unit {unit} not found.", file=sys.stderr)
    sys.exit(5)
if verb in ("start", "restart", "enable") and known["enabled"] == "masked":
    print(f"Failed to {verb} {unit}: Unit {unit} is masked.", file=sys.stderr)
    sys.exit(1)
if verb in ("start", "restart"):
    known["active"] = True
elif verb == "stop":
    known["active"] = False
elif verb == "enable":
    known["enabled"] = "enabled"
elif verb == "disable":
    known["enabled"] = "disabled"
elif verb == "mask":
    known["before_mask"] = known["enabled"]
    known["enabled"] = "masked"
elif verb == "unmask":
    if known["enabled"] == "masked":
        known["enabled"] = known.pop("before_mask", "disabled")
else:
    print(f"fake systemctl: unknown verb {verb}", file=sys.stderr)
    sys.exit(1)
with open(path, "w") as f:
    json.dump(state, f)
