"""`make deb`: dist/cronsup_VERSION_ARCH.deb, built with dpkg-deb from this checkout.

The layout: cronsup and its dependencies unpacked from wheels into /usr/lib/cronsup/lib (no
virtualenv: a venv's site-packages is named after Python's minor version and its scripts
after where it was built; the compiled dependencies, psutil and watchfiles, are abi3 wheels,
so a Python upgrade keeps them working), /usr/bin/cronsup a launcher for /usr/bin/python3,
the units, an init script, /etc/cronsup/jobs as a conffile, two man pages.

    python packaging/deb/build.py [--wheels DIR] [--out DIR] [--stage DIR]

--wheels caches the dependencies' wheels (default build/wheels; CRONSUP_WHEELS): once they
are there, the build needs no network.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
LIB = "/usr/lib/cronsup/lib"
MAINTAINER = "cronsup maintainers <maintainers@users.noreply.b-seed-e441c662.example>"


def run(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), check=True, **kw)


def project() -> dict:
    with open(REPO / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]


def install_dependencies(lib: Path, wheels: Path, deps: list[str]) -> None:
    """The wheels of `deps` unpacked into `lib`: from the cache, else downloaded into it."""
    wheels.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    target = ["install", "--target", str(lib), "--no-compile", "--only-binary", ":all:",
              "--no-index", "--find-links", str(wheels), *deps]
    if subprocess.run(pip + target, capture_output=True).returncode != 0:
        run(*pip, "download", "--only-binary", ":all:", "--dest", str(wheels), *deps)
        run(*pip, *target)
    shutil.rmtree(lib / "bin", ignore_errors=True)  # console scripts naming the build's python
    for module in lib.rglob("*.py"):  # a module's own #! (prometheus_client's) is never run
        text = module.read_bytes()
        if text.startswith(b"#!"):
            module.write_bytes(b"#" + text[2:])
    for so in lib.rglob("*.so"):
        if not so.name.endswith(".abi3.so"):
            sys.exit(f"build.py: {so.relative_to(lib)} is not from an abi3 wheel; a Python "
                     "upgrade would break it (pick a dependency that ships abi3 wheels)")
        if shutil.which("strip"):
            run("strip", "--strip-unneeded", "--remove-section=.comment", "--remove-section=.note",
                str(so))


def install_cronsup(lib: Path, version: str, meta: dict) -> None:
    """This checkout's package (its .py files) and the metadata importlib.metadata reads."""
    for src in sorted((REPO / "cronsup").rglob("*.py")):
        dest = lib / src.relative_to(REPO)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
    info = lib / f"cronsup-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: cronsup\nVersion: {version}\nSummary: {meta['description']}\n"
        f"Requires-Python: {meta['requires-python']}\n")
    (info / "INSTALLER").write_text("dpkg\n")


def gz(src_text: bytes, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0,
                                                compresslevel=9) as f:
        f.write(src_text)


def put(stage: Path, path: str, text: str | bytes, mode: int = 0o644) -> Path:
    dest = stage / path.lstrip("/")
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(text.encode() if isinstance(text, str) else text)
    dest.chmod(mode)
    return dest


STARTING_JOBS = """\
# /etc/cronsup/jobs: cronsup's jobs file (cronsup-jobs(5)). Any crontab is a valid jobs file;
# option blocks ([defaults], [job.NAME]) add timeouts, overlap, retries and chains.
# Examples: /usr/share/doc/cronsup/examples/. Check edits with `cronsup check`; the daemon
# rereads this file when it is saved.
#
# After `cronsup takeover`, cronsup also runs cron's own files (/etc/crontab, /etc/cron.d/*,
# `crontab -e`); a [cron] block here gives their jobs options, as [defaults] does.

SHELL=/bin/sh
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

[defaults]
timeout = "1h"

# m h dom mon dow  command
"""

COPYRIGHT = """\
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: cronsup
Comment: /usr/lib/cronsup/lib also holds cronsup's dependencies, unpacked from their wheels
 (@DEPS@); each one's license is in its *.dist-info directory there.

Files: *
Copyright: 2026 cronsup maintainers
License: MIT

License: MIT
 Permission is hereby granted, free of charge, to any person obtaining a copy of this
 software and associated documentation files (the "Software"), to deal in the Software
 without restriction, including without limitation the rights to use, copy, modify, merge,
 publish, distribute, sublicense, and/or sell copies of the Software, and to permit persons
 to whom the Software is furnished to do so, subject to the following conditions:
 .
 The above copyright notice and this permission notice shall be included in all copies or
 substantial portions of the Software.
 .
 THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED,
 INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR
 PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE
 FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR
 OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER
 DEALINGS IN THE SOFTWARE.
"""


def changelog(version: str, epoch: int) -> str:
    from email.utils import formatdate

    return (f"cronsup ({version}) unstable; urgency=medium\n\n"
            f"  * Packaged from the cronsup source tree (make deb).\n\n"
            f" -- {MAINTAINER}  {formatdate(epoch)}\n")


def unit(path: Path, old: str) -> str:
    text = path.read_text()
    if "\n[Service]" in text:  # the man page exists where the package is installed
        description = re.search(r"^Description=.*\n", text, re.M).group(0)
        text = text.replace(description, description + "# `man cronsup`, `man cronsup-jobs`.\n"
                            "Documentation=man:cronsup(8) man:cronsup-jobs(5)\n", 1)
    return text.replace(old, "/usr/bin/cronsup").replace(
        "(packaging/install.sh does)", "(the cronsup package does)").replace(
        "install.sh rewrites the\n# program's path when it installs elsewhere than /usr/local/bin.",
        "`cronsup takeover` adds\n# --cron in a drop-in (cronsup.service.d/takeover.conf).")


def control(stage: Path, version: str, arch: str, meta: dict) -> str:
    size = sum(p.stat().st_size for p in stage.rglob("*") if p.is_file() and "DEBIAN" not in p.parts)
    depends = shlib_depends(stage) + ["python3 (>= 3.11)"]
    return (f"Package: cronsup\nVersion: {version}\nArchitecture: {arch}\nMaintainer: {MAINTAINER}\n"
            f"Installed-Size: {(size + 1023) // 1024}\nDepends: {', '.join(depends)}\n"
            "Recommends: cron-daemon-common\nSuggests: default-mta | mail-transport-agent\n"
            "Section: admin\nPriority: optional\n"
            "Description: crontab-compatible job supervisor daemon\n"
            " cronsup reads crontabs and runs their jobs as cron does, and adds per-job\n"
            " timeouts, overlap locking, retries, job chains and a run log with every\n"
            " run's output and exit status.\n"
            " .\n"
            " Installing it starts nothing. `cronsup takeover` makes it the server's cron\n"
            " (cron's own files, user crontabs and `crontab -e` keep working);\n"
            " `cronsup release` gives the server back to cron.\n")


def shlib_depends(stage: Path) -> list[str]:
    """What the compiled modules link to, from dpkg-shlibdeps (libc6, libgcc-s1)."""
    objects = [str(p) for p in stage.rglob("*.so")]
    if not objects or not shutil.which("dpkg-shlibdeps"):
        return ["libc6 (>= 2.17)"]
    tmp = stage.parent / "shlibdeps"
    (tmp / "debian").mkdir(parents=True, exist_ok=True)
    (tmp / "debian" / "control").write_text("Source: cronsup\n\nPackage: cronsup\nArchitecture: any\n")
    said = subprocess.run(["dpkg-shlibdeps", "-O", "--ignore-missing-info", *objects],
                          cwd=tmp, capture_output=True, text=True)
    shutil.rmtree(tmp)
    line = said.stdout.strip().partition("shlibs:Depends=")[2]
    return [d.strip() for d in line.split(",") if d.strip()] or ["libc6 (>= 2.17)"]


def build(out: Path, stage: Path, wheels: Path) -> Path:
    meta = project()
    version = meta["version"]
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                          check=True).stdout.strip()
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH") or subprocess.run(
        ["git", "log", "-1", "--format=%ct"], cwd=REPO, capture_output=True, text=True).stdout.strip()
        or 0)
    os.environ["SOURCE_DATE_EPOCH"] = str(epoch)
    if stage.exists():
        shutil.rmtree(stage)
    lib = stage / LIB.lstrip("/")
    lib.mkdir(parents=True)
    install_dependencies(lib, wheels, meta["dependencies"])
    install_cronsup(lib, version, meta)
    put(stage, "/usr/bin/cronsup", (HERE / "launcher").read_text().replace("@LIB@", LIB), 0o755)
    put(stage, "/lib/systemd/system/cronsup.service",
        unit(REPO / "systemd" / "cronsup.service", "/usr/local/bin/cronsup"))
    put(stage, "/usr/lib/systemd/user/cronsup.service",
        unit(REPO / "systemd" / "cronsup-user.service", "%h/.local/bin/cronsup"))
    put(stage, "/etc/init.d/cronsup", (HERE / "cronsup.init").read_text(), 0o755)
    put(stage, "/etc/cronsup/jobs", STARTING_JOBS)
    doc = "/usr/share/doc/cronsup"
    deps = sorted(d.name.split("-")[0] for d in lib.glob("*.dist-info") if not d.name.startswith("cronsup-"))
    put(stage, f"{doc}/copyright", COPYRIGHT.replace("@DEPS@", ",\n ".join(
        ", ".join(deps[i:i + 6]) for i in range(0, len(deps), 6))))
    gz(changelog(version, epoch).encode(), stage / doc.lstrip("/") / "changelog.gz")
    gz((REPO / "README.md").read_bytes(), stage / doc.lstrip("/") / "README.md.gz")
    for example in sorted((REPO / "examples").iterdir()):
        put(stage, f"{doc}/examples/{example.name}", example.read_bytes())
    put(stage, "/usr/share/lintian/overrides/cronsup", (HERE / "lintian-overrides").read_text())
    sys.path.insert(0, str(HERE))
    import manpages

    pages = manpages.write(stage.parent / "man", version)
    for page in pages:
        section = page.suffix.lstrip(".")
        gz(page.read_bytes(), stage / f"usr/share/man/man{section}/{page.name}.gz")
    shutil.rmtree(stage.parent / "man")

    for path in stage.rglob("*"):  # dpkg-deb keeps modes as they are: make them Debian's
        if path.is_dir():
            path.chmod(0o755)
        elif path.is_file() and not (path.stat().st_mode & 0o100):
            path.chmod(0o644)
        elif path.is_file():
            path.chmod(0o755 if path.suffix != ".so" else 0o644)
    debian = stage / "DEBIAN"
    debian.mkdir()
    (debian / "control").write_text(control(stage, version, arch, meta))
    (debian / "conffiles").write_text("/etc/cronsup/jobs\n/etc/init.d/cronsup\n")
    for script in ("postinst", "prerm", "postrm"):
        shutil.copyfile(HERE / script, debian / script)
        (debian / script).chmod(0o755)
    sums = []
    for path in sorted(p for p in stage.rglob("*") if p.is_file() and "DEBIAN" not in p.relative_to(stage).parts):
        rel = path.relative_to(stage)
        if "/" + str(rel) in ("/etc/cronsup/jobs", "/etc/init.d/cronsup"):
            continue  # conffiles have their sums in the status file, not md5sums
        sums.append(f"{hashlib.md5(path.read_bytes()).hexdigest()}  {rel}\n")
    (debian / "md5sums").write_text("".join(sums))
    (debian / "md5sums").chmod(0o644)
    for path in [stage, *stage.rglob("*")]:
        os.utime(path, (epoch, epoch), follow_symlinks=False)
    out.mkdir(parents=True, exist_ok=True)
    deb = out / f"cronsup_{version}_{arch}.deb"
    run("dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(stage), str(deb),
        stdout=subprocess.DEVNULL)
    return deb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(REPO / "dist"))
    parser.add_argument("--stage", default=str(REPO / "build" / "deb" / "root"))
    parser.add_argument("--wheels", default=os.environ.get("CRONSUP_WHEELS") or str(REPO / "build" / "wheels"))
    args = parser.parse_args()
    print(build(Path(args.out), Path(args.stage), Path(args.wheels)))


if __name__ == "__main__":
    main()
