#!/usr/bin/env bash
# setup.sh: install lymph 0.15.0 from PyPI, patched for Python 3.11, into a virtual
# environment under $LYMPH_PEER_HOME. Does nothing when that is already done.
set -euo pipefail

LYMPH_VERSION=0.15.0
LYMPH_SHA256=90bac4d6459efef29a83037628ca6be9eec10cf26f575223a79118e207871d37  # the sdist on PyPI

if [ $# -gt 0 ]; then
    cat >&2 <<'USAGE'
usage: setup.sh
Installs lymph 0.15.0 into $LYMPH_PEER_HOME/venv (default ~/.cache/lymph-python-peer);
progress goes to stderr, nothing is printed when it is already installed.
LYMPH_PEER_PYTHON names the interpreter (default python3, tested with 3.11).
USAGE
    exit 2
fi

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
PY="${LYMPH_PEER_PYTHON:-python3}"
STAMP="$LYMPH_PEER_HOME/setup.stamp"
PATCH="$HARNESS/lymph-$LYMPH_VERSION-py311.patch"

# What the installation depends on; a change means a fresh install.
wanted() {
    {
        "$PY" -c 'import sys; print(sys.version, sys.executable)'
        cat "$HARNESS/setup.sh" "$HARNESS/requirements.txt" "$PATCH"
    } | sha256sum | cut -d ' ' -f 1
}
installed() {
    [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && [ -x "$VENV/bin/lymph" ]
}

command -v "$PY" >/dev/null || die "no '$PY' (set LYMPH_PEER_PYTHON)"
WANT="$(wanted)"
installed && exit 0

exec 9>"$LYMPH_PEER_HOME/setup.lock"
flock 9                      # a concurrent setup.sh finishes first
installed && exit 0

log() { echo "lymph-python-peer setup: $*" >&2; }
for tool in patch tar sha256sum setsid; do
    command -v "$tool" >/dev/null || die "setup needs '$tool'"
done
"$PY" -c 'import venv, ensurepip' 2>/dev/null || die "'$PY' cannot create virtual environments (Debian: python3-venv)"
command -v cc >/dev/null || command -v gcc >/dev/null || die "netifaces is compiled: install gcc"

log "installing into $LYMPH_PEER_HOME"
rm -f "$STAMP"
rm -rf "$VENV" "$LYMPH_PEER_HOME/src"
"$PY" -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check --no-input -q "$@"; }

# The build tools first, so that the sdists are built with the pinned ones.
pip install $(grep -E '^(setuptools|wheel)==' "$HARNESS/requirements.txt")
pip install --no-build-isolation -r "$HARNESS/requirements.txt"

SRC="$LYMPH_PEER_HOME/src"
pip download --no-deps --no-binary :all: --no-build-isolation -d "$SRC" "lymph==$LYMPH_VERSION"
echo "$LYMPH_SHA256  $SRC/lymph-$LYMPH_VERSION.tar.gz" | sha256sum --check --quiet ||
    die "lymph-$LYMPH_VERSION.tar.gz does not have the sha256 of the file on PyPI"
tar --no-same-owner -xzf "$SRC/lymph-$LYMPH_VERSION.tar.gz" -C "$SRC"
patch -d "$SRC/lymph-$LYMPH_VERSION" -p1 --quiet <"$PATCH"
pip install --no-deps --no-build-isolation "$SRC/lymph-$LYMPH_VERSION"
pip check >&2

# Smoke test: the command line starts, and the services import.
peer_env
(cd "$LYMPH_PEER_HOME" && "$VENV/bin/lymph" list >/dev/null)
"$VENV/bin/python" -c 'import lymph.monkey; lymph.monkey.patch(); import echo, listener'

echo "$WANT" >"$STAMP"
log "done: $VENV/bin/lymph"
