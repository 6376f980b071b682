"""`roost run` when it is not PID 1: a child subreaper that sweeps its own descendants.

Most cases run roost as PID 2 of a namespace under a small PID 1 (INIT below) that
reports what is left once roost is gone, so nothing can leak onto the host. One case
runs roost as a plain process on the host and cleans up by PID.
"""

from __future__ import annotations

import _signal
import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests import support
from tests.ns.test_run import DAEMON, py, roost
from tests.support import PYTHON, Namespace, started, wait_for

pytestmark = pytest.mark.usefixtures("unshare_required")



# PID 1 of the namespace: run argv[1:], reap everything, and when that child is gone
# print "left: PID..." (every other process still in the namespace) on stderr and exit
# with the child's status.
INIT = r"""
import os, sys, time
child = os.fork()
if child == 0:
    os.execv(sys.argv[1], sys.argv[1:])
status = None
while status is None:
    pid, st = os.waitpid(-1, 0)
    if pid == child:
        status = os.waitstatus_to_exitcode(st)
left = []
for entry in os.listdir("/proc"):
    if entry.isdigit() and int(entry) != 1:
        try:
            state = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            left.append(entry)
print("left:", *left, file=sys.stderr, flush=True)
sys.exit(status if status >= 0 else 128 - status)
"""

# Main child: make an orphan (double fork) that, once re-parented, writes its new parent's
# PID to argv[1] (and its own to argv[1].pid), then lives until TERM (its handler writes
# argv[1].term) or 60 s. Start the daemons named in argv[3:] (kind:path as in the PID 1
# tests), wait until each is armed, then exit with argv[2].
MAIN = r"""
import os, signal, subprocess, sys, time
out, code = sys.argv[1], int(sys.argv[2])
pid = os.fork()
if pid == 0:
    middle = os.getpid()
    if os.fork() == 0:
        while os.getppid() == middle:
            time.sleep(0.005)
        def on_term(s, f):
            open(out + ".term", "w").write("TERM")
            os._exit(0)
        signal.signal(signal.SIGTERM, on_term)
        open(out + ".pid", "w").write(str(os.getpid()))
        with open(out + ".tmp", "w") as f:
            f.write(str(os.getppid()))
        os.rename(out + ".tmp", out)
        time.sleep(60)
        os._exit(3)
    os._exit(0)
os.waitpid(pid, 0)
end = time.monotonic() + 30
while not os.path.exists(out) and time.monotonic() < end:
    time.sleep(0.01)
for spec in sys.argv[3:]:
    kind, path = spec.split(":", 1)
    argv = [sys.executable, "-c", DAEMON, path] + (["ignore"] if kind == "ignore" else [])
    subprocess.Popen(argv, start_new_session=(kind == "setsid"))
for spec in sys.argv[3:]:
    path = spec.split(":", 1)[1] + ".ready"
    while not os.path.exists(path) and time.monotonic() < end:
        time.sleep(0.01)
os._exit(code)
""".replace("DAEMON", repr(DAEMON))


def _left(err: str) -> list[str]:
    (line,) = [x for x in err.splitlines() if x.startswith("left:")]
    return line.split()[1:]


def test_pid2_subreaper_adopts_orphans_and_sweeps_them(tmp_path: Path) -> None:
    orphan = tmp_path / "orphan"
    plain, detached, stubborn = tmp_path / "plain", tmp_path / "setsid", tmp_path / "stubborn"
    argv = py(INIT, *roost("-v", "--grace", "1", "--",
                          *py(MAIN, orphan, 5, f"plain:{plain}", f"setsid:{detached}",
                              f"ignore:{stubborn}")))
    with Namespace(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as ns:
        try:
            _, err_bytes = ns.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            raise AssertionError("no exit within 20 s") from None
        err = err_bytes.decode()
    assert ns.proc.returncode == 5, err
    assert "cannot become a child subreaper" not in err
    # roost is PID 2: the orphan came to it, not to PID 1.
    assert orphan.read_text() == "2", err
    assert Path(f"{orphan}.term").read_text() == "TERM"
    assert plain.read_text().startswith("TERM")
    assert detached.read_text().startswith("TERM")
    assert not stubborn.exists()
    assert "(killed by SIGKILL)" in err, err
    assert err.count("(exited 0)") == 3, err  # the orphan and two daemons, by their handlers
    assert _left(err) == [], err


def test_pid2_forwards_term(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    code = "import signal, sys, time; open(sys.argv[1], 'w').close(); time.sleep(60)"
    with Namespace(py(INIT, *roost("--", *py(code, ready))), stderr=subprocess.PIPE) as ns:
        wait_for(lambda: ready.exists(), what="child ready")
        (roost_pid,) = support.children_of(ns.init_pid)
        os.kill(roost_pid, signal.SIGTERM)
        assert ns.wait(timeout=10) == 143


def test_plain_process_on_the_host(tmp_path: Path) -> None:
    orphan = tmp_path / "orphan"
    argv = roost("-v", "--", *py(MAIN, orphan, 4))
    orphan_pid = None
    try:
        with started(argv, stderr=subprocess.PIPE) as proc:
            wait_for(lambda: orphan.exists(), what="orphan re-parented")
            orphan_pid = int(Path(f"{orphan}.pid").read_text())
            # The orphan's new parent is roost itself.
            assert orphan.read_text() == str(proc.pid)
            assert proc.wait(timeout=20) == 4
            assert proc.stderr is not None
            err = proc.stderr.read().decode()
        assert Path(f"{orphan}.term").read_text() == "TERM"
        assert f"sent SIGTERM to {orphan_pid} (python" in err, err
        assert f"reaped {orphan_pid} (exited 0)" in err, err
        assert support.proc_state(orphan_pid) is None
    finally:
        if orphan_pid is not None and support.proc_state(orphan_pid) is not None:
            with contextlib.suppress(OSError):
                os.kill(orphan_pid, signal.SIGKILL)


# -- a prctl that really fails -------------------------------------------------------------

# Install a seccomp filter that makes prctl(PR_SET_CHILD_SUBREAPER, ...) fail with EPERM
# (every other system call is allowed), then exec argv[1:]. x86_64 only.
SECCOMP_EXEC = r"""
import ctypes, errno, os, struct, sys
AUDIT_ARCH_X86_64 = 0xC000003E
NR_PRCTL = 157
PR_SET_CHILD_SUBREAPER = 36
LD_ABS_W, JEQ_K, RET_K = 0x20, 0x15, 0x06
ALLOW, ERRNO = 0x7FFF0000, 0x00050000
def op(code, jt, jf, k):
    return struct.pack("HBBI", code, jt, jf, k)
prog = b"".join([
    op(LD_ABS_W, 0, 0, 4),                      # arch
    op(JEQ_K, 0, 5, AUDIT_ARCH_X86_64),
    op(LD_ABS_W, 0, 0, 0),                      # syscall number
    op(JEQ_K, 0, 3, NR_PRCTL),
    op(LD_ABS_W, 0, 0, 16),                     # low half of the first argument
    op(JEQ_K, 0, 1, PR_SET_CHILD_SUBREAPER),
    op(RET_K, 0, 0, ERRNO | errno.EPERM),
    op(RET_K, 0, 0, ALLOW),
])
buf = ctypes.create_string_buffer(prog)
class Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
fprog = Fprog(len(prog) // 8, ctypes.addressof(buf))
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
    sys.exit("no_new_privs: " + os.strerror(ctypes.get_errno()))
if libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) != 0:  # PR_SET_SECCOMP, FILTER
    sys.exit("seccomp: " + os.strerror(ctypes.get_errno()))
os.execv(sys.argv[1], sys.argv[1:])
"""

# Check the filter itself: PR_SET_CHILD_SUBREAPER fails with EPERM, other prctls work.
PRCTL_PROBE = r"""
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
r = libc.prctl(36, 1, 0, 0, 0)
print(r, os.strerror(ctypes.get_errno()) if r else "ok", libc.prctl(16, ctypes.c_char_p(b"x")))
"""


@pytest.fixture
def _x86_64() -> None:
    if os.uname().machine != "x86_64":
        pytest.skip("SKIPPED: the seccomp filter in this test is written for x86_64")


@pytest.mark.usefixtures("_x86_64")
def test_seccomp_filter_really_makes_prctl_fail() -> None:
    ran = subprocess.run(py(SECCOMP_EXEC, *py(PRCTL_PROBE)), capture_output=True, timeout=20,
                         check=False)
    assert ran.stdout.decode().split() == ["-1", "Operation", "not", "permitted", "0"], ran


@pytest.mark.usefixtures("_x86_64")
def test_failed_prctl_only_warns(tmp_path: Path) -> None:
    orphan = tmp_path / "orphan"
    argv = py(INIT, *py(SECCOMP_EXEC, *roost("--", *py(MAIN, orphan, 6))))
    with Namespace(argv, stderr=subprocess.PIPE) as ns:
        # Without the subreaper bit, the orphan goes to PID 1, and roost cannot sweep it:
        # PID 1 of this namespace kills it when this test ends.
        wait_for(lambda: orphan.exists(), what="orphan re-parented")
        assert orphan.read_text() == "1"
        assert ns.wait(timeout=20) == 6
        assert ns.proc.stderr is not None
        err = ns.proc.stderr.read().decode()
    warnings = [x for x in err.splitlines() if "cannot become a child subreaper" in x]
    assert warnings == ["roost: warning: cannot become a child subreaper (prctl: Operation "
                        "not permitted); orphans will not come back to roost"], err


def test_subreaper_bit_as_the_kernel_reports_it() -> None:
    # PR_GET_CHILD_SUBREAPER answers for the caller only and /proc does not show the bit,
    # so this asks in the process that ran roost's own code; the orphan tests above show
    # its effect on a running roost.
    code = (
        "import ctypes, sys\n"
        "from roost.kernel import prctl\n"
        "prctl.become_subreaper('orphans will not come back to roost')\n"
        "libc = ctypes.CDLL(None)\n"
        "flag = ctypes.c_int(-1)\n"
        "libc.prctl(37, ctypes.byref(flag), 0, 0, 0)\n"
        "print(flag.value)\n"
    )
    ran = subprocess.run([PYTHON, "-c", code], capture_output=True, timeout=20, check=False)
    assert ran.stdout.decode().strip() == "1", ran
    assert ran.stderr == b""


def test_signal_sent_during_sweep_does_not_kill_roost(tmp_path: Path) -> None:
    # TERM to roost after its main child is gone, while it waits for the rest: roost
    # keeps waiting and exits with the main child's status.
    slow = tmp_path / "slow"
    daemon = (
        "import os, signal, sys, time\n"
        "def on_term(s, f):\n"
        "    time.sleep(0.5)\n"
        "    open(sys.argv[1], 'w').write('done')\n"
        "    os._exit(0)\n"
        "signal.signal(signal.SIGTERM, on_term)\n"
        "open(sys.argv[1] + '.ready', 'w').close()\n"
        "time.sleep(60)\n"
    )
    main = (
        "import os, subprocess, sys, time\n"
        "subprocess.Popen([sys.executable, '-c', sys.argv[2], sys.argv[1]])\n"
        "while not os.path.exists(sys.argv[1] + '.ready'):\n"
        "    time.sleep(0.01)\n"
        "os._exit(9)\n"
    )
    with Namespace(py(INIT, *roost("-v", "--grace", "30", "--", *py(main, slow, daemon))),
                   stderr=subprocess.PIPE) as ns:
        wait_for(lambda: Path(f"{slow}.ready").exists(), what="daemon ready")
        (roost_pid,) = support.children_of(ns.init_pid)

        def main_gone() -> bool:
            return len(support.children_of(roost_pid)) == 1

        wait_for(main_gone, what="main child gone")
        time.sleep(0.1)
        os.kill(roost_pid, _signal.SIGTERM)
        assert ns.wait(timeout=10) == 9
        assert ns.proc.stderr is not None
        err = ns.proc.stderr.read().decode()
    assert slow.read_text() == "done"
    assert _left(err) == []
