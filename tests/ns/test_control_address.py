"""A non-root roost's socket directory, /tmp/roost-UID, planted by another user: roost
refuses to listen there and the client refuses to talk there. Each case runs in a mount
namespace of its own, with a fresh tmpfs on /tmp: the host's /tmp is never touched."""

from __future__ import annotations

import subprocess

import pytest

from tests.support import PYTHON, ROOST, require_unshare

pytestmark = pytest.mark.timeout(120)

USER = 1000  # runs roost; 65534 plants the directory
ROOST_LINE = " ".join(ROOST)

# A fake roost, run by 65534, counting who connects.
FAKE = r"""
import os, socket, sys
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
address = sys.argv[1]
sock.bind("\0" + address[1:] if address.startswith("@") else address)
if not address.startswith("@"):
    os.chmod(address, 0o777)
sock.listen(8)
sock.settimeout(8)
try:
    while True:
        sock.accept()
        open("/tmp/fake-connected", "a").write("x")
except OSError:
    pass
"""


def in_fresh_tmp(script: str) -> subprocess.CompletedProcess[str]:
    """Run a shell script as root in a new mount namespace with its own /tmp."""
    require_unshare()
    prelude = (f"set -u; mount -t tmpfs tmpfs /tmp; mkdir /tmp/conf; chmod 755 /tmp/conf; "
               f"echo 'command = [\"sleep\", \"600\"]' > /tmp/conf/svc.toml; "
               f"AS_USER='env -u ROOST_CONTROL -u XDG_RUNTIME_DIR setpriv --reuid={USER} "
               f"--regid={USER} --clear-groups'; ")
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                           prelude + script], capture_output=True, text=True, timeout=90,
                          stdin=subprocess.DEVNULL)


@pytest.mark.parametrize(("plant", "reason"), [
    ("mkdir -m 700 /tmp/roost-1000; chown 65534:65534 /tmp/roost-1000",
     "/tmp/roost-1000 is owned by uid 65534, not by uid 1000"),
    ("mkdir -m 777 /tmp/roost-1000; chmod 777 /tmp/roost-1000; chown 1000 /tmp/roost-1000",
     "/tmp/roost-1000 has mode 0777, open to other users"),
    ("mkdir -m 700 /tmp/elsewhere; chown 1000 /tmp/elsewhere; "
     "ln -s /tmp/elsewhere /tmp/roost-1000", "/tmp/roost-1000 is a symbolic link"),
])
def test_roost_refuses_a_planted_directory(plant: str, reason: str) -> None:
    result = in_fresh_tmp(f"{plant}; $AS_USER {ROOST_LINE} up -c /tmp/conf; echo rc=$?; "
                          "ls -A /tmp/elsewhere /tmp/roost-1000/ 2>/dev/null")
    assert "rc=1" in result.stdout, (result.stdout, result.stderr)
    assert (f"roost: cannot listen on /tmp/roost-1000/control: {reason}"
            in result.stderr), result.stderr
    assert "control" not in result.stdout  # no socket was made where it was planted


def test_roost_makes_its_directory_private() -> None:
    result = in_fresh_tmp(
        f"$AS_USER {ROOST_LINE} up -c /tmp/conf & pid=$!; "
        f"for i in $(seq 100); do $AS_USER {ROOST_LINE} status >/dev/null 2>&1 && break; "
        "sleep 0.1; done; stat -c 'mode=%a owner=%u' /tmp/roost-1000; "
        f"$AS_USER {ROOST_LINE} status; echo rc=$?; kill $pid; wait $pid")
    assert "mode=700 owner=1000" in result.stdout, (result.stdout, result.stderr)
    assert "rc=0" in result.stdout and "svc" in result.stdout, result.stderr


def test_the_client_refuses_a_socket_another_user_controls() -> None:
    result = in_fresh_tmp(
        "mkdir -m 755 /tmp/roost-1000; chown 65534:65534 /tmp/roost-1000; "
        "cat > /tmp/fake.py <<'EOF'\n" + FAKE + "\nEOF\n"
        "touch /tmp/fake-connected; chmod 666 /tmp/fake-connected; "
        f"setpriv --reuid=65534 --regid=65534 --clear-groups {PYTHON} -I /tmp/fake.py "
        "/tmp/roost-1000/control & fake=$!; "
        "for i in $(seq 50); do [ -S /tmp/roost-1000/control ] && break; sleep 0.1; done; "
        f"$AS_USER {ROOST_LINE} status; echo rc=$?; "
        # An abstract name has no owner to check: the listener's credentials are.
        f"setpriv --reuid=65534 --regid=65534 --clear-groups {PYTHON} -I /tmp/fake.py "
        "@roost-planted & fake2=$!; sleep 0.5; "
        f"$AS_USER {ROOST_LINE} status --control @roost-planted; echo rc=$?; "
        "kill $fake $fake2; wait; echo connected=$(cat /tmp/fake-connected)end")
    assert result.stdout.count("rc=1") == 2, (result.stdout, result.stderr)
    assert ("roost: will not talk to /tmp/roost-1000/control: /tmp/roost-1000 is owned by uid "
            "65534, not by uid 1000 or root") in result.stderr, result.stderr
    assert ("roost: will not talk to @roost-planted: it is served by uid 65534, neither root "
            "nor you") in result.stderr, result.stderr
    # The path was never connected to; the abstract one only to learn who listens.
    assert "connected=xend" in result.stdout, result.stdout
