#!/bin/sh
# Install everything roost's tests need on a fresh Debian machine, then run them all:
# lint, type check, unit tests, namespace tests, and the qemu boot tests.
# Run as root (the tests make PID, mount and cgroup namespaces). Usage: tests/run.sh [pytest args]
set -eu
cd "$(dirname "$0")/.."

# Tools, not daemons (util-linux and e2fsprogs are on every Debian system already). The
# daemons the tests run (nginx, dnsmasq, systemd-notify) are unpacked into .cache/debs by
# tests/debs.py instead, never installed, so nothing is enabled on this machine.
PACKAGES="util-linux procps e2fsprogs iproute2 adduser qemu-system-x86 runc zsh fish groff-base"

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    missing=""
    for p in $PACKAGES; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
    done
    if [ -n "$missing" ]; then
        # No package may start a system service on the machine running the tests.
        policy=/usr/sbin/policy-rc.d
        had_policy=no
        [ -e "$policy" ] && had_policy=yes
        [ "$had_policy" = yes ] || { printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"; }
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
        [ "$had_policy" = yes ] || rm -f "$policy"
    fi
    # qemu was just installed: a VM test that cannot boot is a failure, not a skip.
    export ROOST_VM_REQUIRE=1
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    # A copy of the interpreter, not a link: the tests run roost's client as other uids,
    # through the launcher's exec of env, and the interpreter's own directory (a pyenv
    # under /root) may be closed to them.
    "$PYTHON" -m venv --copies .venv
fi
.venv/bin/pip install -q -e '.[test]'
if [ "$(id -u)" -eq 0 ]; then
    .venv/bin/python -m tests.debs
fi
# Bytecode once, not at every start of every roost the tests run.
.venv/bin/python -m compileall -q src tests >/dev/null

.venv/bin/ruff check src tests bench
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
