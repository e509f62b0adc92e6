#!/bin/sh
# Install cronsup as a root service: its modules under /opt/cronsup/lib (the Debian package's
# layout, see packaging/deb/build.py), the program linked into /usr/local/bin, the systemd units, and /etc/cronsup/jobs if there is none yet (imported
# from /etc/crontab and /etc/cron.d/* when they exist). Safe to run again to upgrade: an
# existing jobs file is never touched.
#
#   sudo packaging/install.sh
#
# Settings (environment variables):
#   DESTDIR      stage everything under this directory (packaging, tests); no systemctl then
#   PREFIX       lib/ (the modules) and bin/cronsup               (/opt/cronsup)
#   BINDIR       where the `cronsup` command is linked            (/usr/local/bin)
#   SYSCONFDIR   parent of cronsup/jobs                           (/etc)
#   UNITDIR      system unit directory                            (/etc/systemd/system)
#   USERUNITDIR  user unit directory, for `systemctl --user`      (/etc/systemd/user)
#   PYTHON       Python 3.11 or newer that runs cronsup           (python3)
#   SOURCE       what pip installs                                (this checkout)
#   CRONSUP_BIN  use this installed cronsup (pipx, the .deb) instead of installing one
#   IMPORT_FROM  crontabs to import into a new jobs file          (/etc/crontab /etc/cron.d/*)
set -eu

here=$(cd "$(dirname "$0")/.." && pwd)
DESTDIR=${DESTDIR:-}
PREFIX=${PREFIX:-/opt/cronsup}
BINDIR=${BINDIR:-/usr/local/bin}
SYSCONFDIR=${SYSCONFDIR:-/etc}
UNITDIR=${UNITDIR:-/etc/systemd/system}
USERUNITDIR=${USERUNITDIR:-/etc/systemd/user}
PYTHON=${PYTHON:-python3}
SOURCE=${SOURCE:-$here}
CRONSUP_BIN=${CRONSUP_BIN:-}
# Unset means "the system's crontabs"; set but empty means "import nothing".
IMPORT_FROM=${IMPORT_FROM-/etc/crontab /etc/cron.d/*}

say() { printf '%s\n' "$*"; }
die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }

# The command: /usr/bin/python3 -IS with PREFIX/lib first on its path, the package's layout.
# It names only final paths, so a DESTDIR stage works once moved into place (no virtualenv,
# whose scripts would name the stage and whose site-packages the Python minor version).
write_launcher() {
    launcher=$1 python=$2 lib=$3
    cat > "$launcher.new" <<EOF
#!$python -IS
"""cronsup, installed by packaging/install.sh: its modules and theirs are in $lib."""
import sys

sys.path.insert(0, "$lib")
from cronsup.cli import main  # noqa: E402

sys.exit(main())
EOF
    chmod 0755 "$launcher.new"
    mv "$launcher.new" "$launcher"
}

# How many job lines of a jobs file do nothing while systemd runs: Debian's cron.d guards,
# `[ ! -d /run/systemd/system ]`, `test -x ... -a \! -d /run/systemd/system`, and e2scrub's
# `test -e /run/systemd/system ||`. Comments do not count.
systemd_guarded() {
    grep -v '^[[:space:]]*#' "$1" | grep -c -E -- '-[de][[:space:]]+/run/systemd/system' || true
}

# `CRONSUP_INSTALL_LIB=1 . packaging/install.sh` defines the functions above and stops (tests).
if [ -n "${CRONSUP_INSTALL_LIB:-}" ]; then return 0; fi

if [ -z "$DESTDIR" ] && [ "$(id -u)" -ne 0 ]; then
    die "run as root (or set DESTDIR to stage the files); for one user, see packaging/README.md"
fi
# Only root can give files to root; a staged install by another user keeps its own.
if [ "$(id -u)" -eq 0 ]; then owner="-o root -g root"; else owner=""; fi

# -- the program ------------------------------------------------------------------------
if [ -n "$CRONSUP_BIN" ]; then
    [ -x "$CRONSUP_BIN" ] || die "CRONSUP_BIN=$CRONSUP_BIN is not an executable"
    target=$CRONSUP_BIN
    run=$CRONSUP_BIN
else
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null ||
        die "cronsup needs Python 3.11 or newer; set PYTHON=/path/to/python3.11"
    python=$(command -v "$PYTHON")
    lib=$PREFIX/lib
    say "modules:    $DESTDIR$lib"
    # pip runs from a throwaway virtualenv (Debian's own python3 refuses `pip install`); what
    # it installs goes to lib.new, swapped in whole once complete.
    build=$(mktemp -d "${TMPDIR:-/tmp}/cronsup-install.XXXXXX")
    trap 'rm -rf "$build"' EXIT
    "$PYTHON" -m venv "$build/venv"
    "$build/venv/bin/pip" install --quiet --disable-pip-version-check --no-compile \
        --prefer-binary --target "$build/lib" "$SOURCE"
    rm -rf "$build/lib/bin"  # console scripts naming the throwaway virtualenv
    install -d -m 0755 "$DESTDIR$PREFIX" "$DESTDIR$PREFIX/bin"
    rm -rf "$DESTDIR$lib.new" "$DESTDIR$lib.old"
    cp -R "$build/lib" "$DESTDIR$lib.new"
    # .pyc naming the final path, not the stage, in tracebacks.
    "$python" -IS -m compileall -q -s "$DESTDIR$lib.new" -p "$lib" "$DESTDIR$lib.new" > /dev/null || true
    if [ -d "$DESTDIR$lib" ]; then mv "$DESTDIR$lib" "$DESTDIR$lib.old"; fi
    mv "$DESTDIR$lib.new" "$DESTDIR$lib"
    rm -rf "$DESTDIR$lib.old"
    write_launcher "$DESTDIR$PREFIX/bin/cronsup" "$python" "$lib"
    target=$PREFIX/bin/cronsup
    run=$DESTDIR$PREFIX/bin/cronsup
    if [ -n "$DESTDIR" ]; then
        # The staged launcher names $lib, where the modules will be; for the import below,
        # one that runs them where they are now.
        run=$build/cronsup
        write_launcher "$run" "$python" "$DESTDIR$lib"
    fi
fi
if [ "$target" != "$BINDIR/cronsup" ]; then
    install -d -m 0755 "$DESTDIR$BINDIR"
    ln -sfn "$target" "$DESTDIR$BINDIR/cronsup"
    say "command:    $DESTDIR$BINDIR/cronsup -> $target"
fi

# -- examples ---------------------------------------------------------------------------
install -d -m 0755 "$DESTDIR$PREFIX/share/examples"
for f in "$here"/examples/*; do
    install -m 0644 "$f" "$DESTDIR$PREFIX/share/examples/"
done

# -- systemd units ----------------------------------------------------------------------
install -d -m 0755 "$DESTDIR$UNITDIR" "$DESTDIR$USERUNITDIR"
sed -e "s|/usr/local/bin/cronsup|$BINDIR/cronsup|" \
    -e "s|/etc/cronsup/jobs|$SYSCONFDIR/cronsup/jobs|" \
    "$here/systemd/cronsup.service" > "$DESTDIR$UNITDIR/cronsup.service.new"
chmod 0644 "$DESTDIR$UNITDIR/cronsup.service.new"
mv "$DESTDIR$UNITDIR/cronsup.service.new" "$DESTDIR$UNITDIR/cronsup.service"
say "unit:       $DESTDIR$UNITDIR/cronsup.service"
# Installed system-wide, the user unit runs this installation, not one in ~/.local/bin.
sed -e "s|%h/.local/bin/cronsup|$BINDIR/cronsup|" \
    "$here/systemd/cronsup-user.service" > "$DESTDIR$USERUNITDIR/cronsup.service.new"
chmod 0644 "$DESTDIR$USERUNITDIR/cronsup.service.new"
mv "$DESTDIR$USERUNITDIR/cronsup.service.new" "$DESTDIR$USERUNITDIR/cronsup.service"
say "user unit:  $DESTDIR$USERUNITDIR/cronsup.service"

# -- the jobs file ----------------------------------------------------------------------
# A root daemon refuses a jobs file that is not root's or that others can write: its
# commands run as root. 0644 as /etc/crontab; make it 0600 if it holds secrets.
conf=$DESTDIR$SYSCONFDIR/cronsup
jobs=$conf/jobs
install -d -m 0755 $owner "$conf"
if [ -e "$jobs" ]; then
    say "jobs file:  $jobs exists; left as it is"
else
    crontabs=""
    for f in $IMPORT_FROM; do
        [ -f "$f" ] && crontabs="$crontabs $f"
    done
    if [ -n "$crontabs" ]; then
        # shellcheck disable=SC2086 # one word per file
        if "$run" import --system $crontabs > "$jobs.new" && "$run" check "$jobs.new" > /dev/null; then
            origin="imported from$crontabs"
        else
            rm -f "$jobs.new"
            die "could not import$crontabs (errors above); fix them, or write $jobs yourself, and run this again"
        fi
    else
        cat > "$jobs.new" <<EOF
# $SYSCONFDIR/cronsup/jobs: cronsup's jobs file. Any crontab is a valid jobs file; option
# blocks ([defaults], [job.NAME]) add timeouts, overlap, retries and chains.
# Examples: $PREFIX/share/examples/ (jobs shows every option).
# Check your edits with \`cronsup check\`; the daemon rereads this file when it is saved.

SHELL=/bin/sh
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
MAILTO=root

[defaults]
timeout = "1h"

# m h dom mon dow  command
EOF
        origin="a starting point; see $PREFIX/share/examples"
    fi
    chmod 0644 "$jobs.new"
    if [ -n "$owner" ]; then chown root:root "$jobs.new"; fi
    mv "$jobs.new" "$jobs"
    say "jobs file:  $jobs ($origin)"
    guarded=$(systemd_guarded "$jobs")
    if [ "$guarded" -gt 0 ]; then
        say "note:       $guarded imported line(s) do nothing when systemd runs (Debian's cron.d"
        say "            guard: a systemd timer does that work). Keep them so, or remove the"
        say "            guard and disable the timer (certbot.timer, phpsessionclean.timer ...)."
    fi
fi

# -- next steps -------------------------------------------------------------------------
if [ -z "$DESTDIR" ] && [ -d /run/systemd/system ] && command -v systemctl > /dev/null; then
    systemctl daemon-reload
fi
cat <<EOF

Next steps:
  cronsup check $SYSCONFDIR/cronsup/jobs    # review the jobs
  systemctl enable --now cronsup     # start it now and at every boot
  systemctl status cronsup           # its Status: line counts jobs, running ones, errors
  cronsup status                     # every job: next run, last run, running now
If the jobs came from cron, stop cron running them twice: comment them out of
/etc/crontab and /etc/cron.d/*, or \`systemctl disable --now cron\` if nothing is left.
EOF
