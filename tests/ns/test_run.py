"""`roost run` as PID 1 of a fresh PID namespace, signalled from outside as a runtime does.

Exit statuses, signal forwarding and its options, reaping, the end-of-life sweep, and
what the child inherits. Every namespace is torn down by its context manager (SIGKILL to
its PID 1 takes the whole namespace with it); every helper program has its own deadline.
"""

from __future__ import annotations

import _signal
import concurrent.futures
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.support import (
    PYTHON,
    ROOST,
    Namespace,
    descendants,
    proc_state,
    run_ns,
    voluntary_switches,
    wait_for,
)

pytestmark = pytest.mark.usefixtures("unshare_required")

# Deadline for one roost run in these tests: far below the grace periods the tests set
# where they check that roost does not sleep the whole grace.
RUN_DEADLINE = 20.0



# -- helper programs (run with the real interpreter; each ends by itself) ----------------

# Record each signal in argv[2:] as a line in argv[1]; exit 0 on TERM; touch argv[1].ready
# once the handlers are in place; give up after 60 s.
RECORDER = r"""
import os, signal, sys, time
out, nums = sys.argv[1], [int(n) for n in sys.argv[2:]]
def record(signum, frame):
    fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, f"{signum}\n".encode())
    os.close(fd)
    if signum == signal.SIGTERM:
        sys.exit(0)
for n in nums:
    signal.signal(n, record)
open(out + ".ready", "w").close()
end = time.monotonic() + 60
while time.monotonic() < end:
    time.sleep(0.05)
sys.exit(3)
"""

# A plain process with no handler for TERM and SIGINT at its default: touch argv[1], sleep.
NO_HANDLER = r"""
import signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_DFL)
open(sys.argv[1], "w").close()
time.sleep(60)
sys.exit(3)
"""

# A daemon: TERM handler writes argv[1] and exits 0; touches argv[1].ready when armed.
# With argv[2] == "ignore" it ignores TERM instead. Gives up after 60 s.
DAEMON = r"""
import os, signal, sys, time
out = sys.argv[1]
def on_term(signum, frame):
    with open(out, "w") as f:
        f.write(f"TERM {os.getpid()}\n")
    os._exit(0)
if sys.argv[2:] == ["ignore"]:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
else:
    signal.signal(signal.SIGTERM, on_term)
open(out + ".ready", "w").close()
time.sleep(60)
os._exit(3)
"""


def py(code: str, *args: object) -> list[str]:
    """argv running `code` with the real interpreter."""
    return [PYTHON, "-c", code, *(str(a) for a in args)]


def roost(*args: str) -> list[str]:
    """argv of `roost run ARGS`."""
    return [*ROOST, "run", *args]


def exists(path: Path) -> bool:
    return path.exists()


def finish(ns: Namespace, timeout: float = RUN_DEADLINE) -> int:
    """Wait for the namespace's PID 1 to exit; its status."""
    return ns.wait(timeout=timeout)


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


# -- exit statuses ------------------------------------------------------------------------


def test_every_exit_code_passes_through() -> None:
    def one(code: int) -> tuple[int, int]:
        return code, run_ns(roost("--", "sh", "-c", f"exit {code}")).rc

    # Several namespaces at a time: 256 sequential starts would be slow, not stronger.
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        results = dict(pool.map(one, range(256)))
    wrong = {code: rc for code, rc in results.items() if rc != code}
    assert not wrong, f"exit code -> roost's status, where they differ: {wrong}"


@pytest.mark.parametrize(("signum", "expected"), [(6, 134), (9, 137), (11, 139), (15, 143)])
def test_child_killed_by_signal_gives_128_plus_n(signum: int, expected: int) -> None:
    ran = run_ns(roost("--", "sh", "-c", f"ulimit -c 0; kill -{signum} $$"))
    assert ran.rc == expected, ran


def test_exec_failures(tmp_path: Path) -> None:
    not_executable = tmp_path / "script"
    not_executable.write_text("#!/bin/sh\nexit 0\n")
    not_executable.chmod(0o644)
    cases = [
        (["roost-no-such-command"], 127, "roost-no-such-command: command not found"),
        ([str(tmp_path / "missing")], 127, "No such file or directory"),
        ([str(not_executable)], 126, "Permission denied"),
        ([str(tmp_path)], 126, "Permission denied"),
    ]
    for command, code, message in cases:
        ran = run_ns(roost("--", *command))
        assert ran.rc == code, (command, ran)
        assert ran.err.count("\n") == 1 and ran.err.startswith("roost: "), (command, ran)
        assert message in ran.err, (command, ran)
        assert ran.out == ""


def test_remap_exit(tmp_path: Path) -> None:
    ran = run_ns(roost("--remap-exit", "3:0,0:9", "--", "sh", "-c", "exit 3"))
    assert ran.rc == 0, ran
    ran = run_ns(roost("--remap-exit", "3:0,0:9", "--", "true"))
    assert ran.rc == 9, ran
    ran = run_ns(roost("--remap-exit", "127:5", "--", "roost-no-such-command"))
    assert ran.rc == 5, ran
    ran = run_ns(roost("--remap-exit", "126:4", "--", str(tmp_path)))
    assert ran.rc == 4, ran
    ready = tmp_path / "ready"
    with Namespace(roost("--remap-exit", "143:0", "--", *py(NO_HANDLER, ready))) as ns:
        wait_for(lambda: exists(ready), what="child ready")
        ns.signal(_signal.SIGTERM)
        assert finish(ns) == 0


def test_usage_error_exits_2() -> None:
    ran = run_ns(roost("--grace", "never", "--", "true"))
    assert ran.rc == 2
    assert "roost run: --grace: not a number of seconds" in ran.err


# -- TERM and the grace period ------------------------------------------------------------


def test_term_to_child_without_handler_exits_143_at_once(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    with Namespace(roost("--grace", "30", "--", *py(NO_HANDLER, ready))) as ns:
        wait_for(lambda: exists(ready), what="child ready")
        sent = time.monotonic()
        ns.signal(_signal.SIGTERM)
        assert finish(ns, timeout=10) == 143
        # Behavioural, wide margin: it must not have waited out the 30 s grace.
        assert time.monotonic() - sent < 10


def test_term_forwarded_child_exits_0(tmp_path: Path) -> None:
    out = tmp_path / "signals"
    with Namespace(roost("--grace", "30", "--", *py(RECORDER, out, _signal.SIGTERM))) as ns:
        wait_for(lambda: exists(Path(f"{out}.ready")), what="child ready")
        ns.signal(_signal.SIGTERM)
        assert finish(ns, timeout=10) == 0
    assert lines(out) == [str(_signal.SIGTERM)]


def test_child_ignoring_term_is_killed_after_grace(tmp_path: Path) -> None:
    marker = tmp_path / "d"
    with Namespace(roost("--grace", "1", "--", *py(DAEMON, marker, "ignore")),
                   stderr=subprocess.PIPE) as ns:
        wait_for(lambda: exists(Path(f"{marker}.ready")), what="child ready")
        sent = time.monotonic()
        ns.signal(_signal.SIGTERM)
        assert finish(ns) == 137
        elapsed = time.monotonic() - sent
        assert ns.proc.stderr is not None
        err = ns.proc.stderr.read().decode()
    assert elapsed >= 1.0, elapsed
    assert "still running 1s after TERM: killing" in err
    assert not marker.exists()


# Main child for the sweep tests: starts the daemons named in argv[2:] (kind:path; kind is
# plain, setsid or ignore), waits until each is armed, then exits with argv[1].
SPAWN_DAEMONS = r"""
import os, subprocess, sys, time
code = int(sys.argv[1])
for spec in sys.argv[2:]:
    kind, path = spec.split(":", 1)
    argv = [sys.executable, "-c", DAEMON, path] + (["ignore"] if kind == "ignore" else [])
    subprocess.Popen(argv, start_new_session=(kind == "setsid"))
end = time.monotonic() + 30
for spec in sys.argv[2:]:
    path = spec.split(":", 1)[1] + ".ready"
    while not os.path.exists(path) and time.monotonic() < end:
        time.sleep(0.01)
os._exit(code)
""".replace("DAEMON", repr(DAEMON))


def test_daemons_left_behind_get_term_and_the_wait_ends_with_the_last(tmp_path: Path) -> None:
    plain, detached = tmp_path / "plain", tmp_path / "setsid"
    start = time.monotonic()
    ran = run_ns(roost("-v", "--grace", "30", "--",
                       *py(SPAWN_DAEMONS, 7, f"plain:{plain}", f"setsid:{detached}")),
                 timeout=15)
    # Behavioural, wide margin: the grace is 30 s, the daemons go at once on TERM.
    assert time.monotonic() - start < 15
    assert ran.rc == 7, ran
    assert plain.read_text().startswith("TERM"), ran
    assert detached.read_text().startswith("TERM"), ran
    assert "sent SIGTERM to every process left" in ran.err
    assert "sent SIGCONT to every process left" in ran.err
    # Both daemons were reaped by roost (exited 0 from their handlers), not left to the kernel.
    assert ran.err.count("(exited 0)") == 2, ran.err


def test_daemon_ignoring_term_is_killed_at_the_deadline(tmp_path: Path) -> None:
    good, stubborn = tmp_path / "good", tmp_path / "stubborn"
    ran = run_ns(roost("-v", "--grace", "1", "--",
                       *py(SPAWN_DAEMONS, 0, f"setsid:{good}", f"ignore:{stubborn}")))
    assert ran.rc == 0, ran
    assert good.read_text().startswith("TERM")
    assert not stubborn.exists()
    assert "sent SIGKILL to every process left" in ran.err
    assert "(killed by SIGKILL)" in ran.err, ran.err
    assert ran.elapsed >= 1.0


# -- reaping ------------------------------------------------------------------------------

# Main child: fork argv[1] children that each fork a grandchild and exit at once, so the
# grandchildren are orphans; they exit 0.2 s later. Then wait for file argv[2] and exit 0.
ORPHANS = r"""
import os, sys, time
n, go = int(sys.argv[1]), sys.argv[2]
for _ in range(n):
    pid = os.fork()
    if pid == 0:
        if os.fork() == 0:
            time.sleep(0.2)
        os._exit(0)
    os.waitpid(pid, 0)
end = time.monotonic() + 60
while not os.path.exists(go) and time.monotonic() < end:
    time.sleep(0.02)
sys.exit(0)
"""


def test_hundred_orphans_reaped_while_running(tmp_path: Path) -> None:
    go, err = tmp_path / "go", tmp_path / "err"
    with err.open("wb") as err_file, Namespace(
            roost("-v", "--", *py(ORPHANS, 100, go)), stderr=err_file) as ns:
        init = ns.init_pid

        def all_reaped() -> bool:
            reaped = err.read_text().count("reaped ")
            zombies = [p for p in descendants(init) if proc_state(p) == "Z"]
            return reaped == 100 and not zombies

        wait_for(all_reaped, timeout=30, what="100 orphans reaped with no zombie left")
        # roost is still running, with only its main child left below it.
        assert proc_state(init) in ("S", "R")
        assert len(descendants(init)) == 1
        go.touch()
        assert finish(ns) == 0
    log = err.read_text()
    assert log.count("(exited 0)") == 100
    assert "roost: main child 2 exited 0" in log


def test_sigchld_coalescing_never_hangs() -> None:
    # The main child and an orphan exit in the same instant, over and over.
    script = "bash -c 'sleep 0.01 & kill -9 $BASHPID'; sleep 0.0087"
    failures = []
    for i in range(300):
        ran = run_ns(roost("--", "bash", "-c", script), timeout=10)
        if ran.rc != 0:
            failures.append((i, ran))
    assert not failures, failures[:5]


# Main child: fork a child that exits at once; never reap it until argv[1] exists.
ZOMBIE_PARENT = r"""
import os, sys, time
pid = os.fork()
if pid == 0:
    os._exit(5)
print(pid, flush=True)
end = time.monotonic() + 60
while not os.path.exists(sys.argv[1]) and time.monotonic() < end:
    time.sleep(0.02)
sys.exit(0)
"""


def test_zombie_of_a_living_parent_is_left_alone(tmp_path: Path) -> None:
    go = tmp_path / "go"
    with Namespace(roost("-v", "--", *py(ZOMBIE_PARENT, go)), stdout=subprocess.PIPE,
                   stderr=subprocess.PIPE) as ns:
        init = ns.init_pid
        zombies = wait_for(lambda: [p for p in descendants(init) if proc_state(p) == "Z"],
                           what="the main child's zombie")
        (zombie,) = zombies  # type: ignore[misc]
        time.sleep(0.3)
        # Its parent is alive: not roost's to reap.
        assert proc_state(zombie) == "Z"
        go.touch()
        assert finish(ns) == 0
        assert ns.proc.stderr is not None
        err = ns.proc.stderr.read().decode()
    # Once its parent died it came to roost, which reaped it.
    assert "(exited 5)" in err, err


# -- forwarding ---------------------------------------------------------------------------


def test_non_terminal_signals_are_forwarded(tmp_path: Path) -> None:
    out = tmp_path / "signals"
    wanted = [_signal.SIGHUP, _signal.SIGUSR1, _signal.SIGUSR2, _signal.SIGWINCH, _signal.SIGURG,
              _signal.SIGALRM, _signal.SIGCONT, _signal.SIGQUIT, _signal.SIGINT,
              _signal.SIGRTMIN, _signal.SIGRTMIN + 5, _signal.SIGRTMAX]
    with Namespace(roost("-v", "--", *py(RECORDER, out, *wanted, _signal.SIGTERM)),
                   stderr=subprocess.PIPE) as ns:
        wait_for(lambda: exists(Path(f"{out}.ready")), what="child ready")
        for n, signum in enumerate(wanted, 1):
            ns.signal(signum)
            wait_for(lambda n=n: len(lines(out)) >= n, what=f"signal {signum} forwarded")
        ns.signal(_signal.SIGTERM)
        assert finish(ns) == 0
        assert ns.proc.stderr is not None
        err = ns.proc.stderr.read().decode()
    assert lines(out) == [str(s) for s in [*wanted, _signal.SIGTERM]]
    assert "forwarded SIGRTMIN+5 to" in err
    assert "forwarded SIGWINCH to" in err


def test_signal_map_rewrites_and_drops(tmp_path: Path) -> None:
    out = tmp_path / "signals"
    record = [_signal.SIGQUIT, _signal.SIGUSR1, _signal.SIGUSR2, _signal.SIGTERM]
    with Namespace(roost("-v", "--signal-map", "TERM:QUIT,USR1:0", "--",
                         *py(RECORDER, out, *record)), stderr=subprocess.PIPE) as ns:
        wait_for(lambda: exists(Path(f"{out}.ready")), what="child ready")
        ns.signal(_signal.SIGUSR1)
        # USR2 is forwarded after USR1 would have been: once it arrived, USR1 was dropped.
        ns.signal(_signal.SIGUSR2)
        wait_for(lambda: lines(out) == [str(_signal.SIGUSR2)], what="USR2 alone")
        ns.signal(_signal.SIGTERM)
        wait_for(lambda: len(lines(out)) == 2, what="TERM arriving as QUIT")
        assert lines(out) == [str(_signal.SIGUSR2), str(_signal.SIGQUIT)]
        ns.signal(_signal.SIGKILL)
        ns.wait()
        assert ns.proc.stderr is not None
        err = ns.proc.stderr.read().decode()
    assert "SIGUSR1 dropped (--signal-map)" in err
    assert "forwarded SIGQUIT to" in err


# Main child: start argv[2] helpers in its own process group, each recording USR1 to
# argv[1].N; record USR1 itself to argv[1].main; exit 0 on TERM.
GROUP = r"""
import os, signal, subprocess, sys, time
base, count = sys.argv[1], int(sys.argv[2])
helper = '''
import os, signal, sys, time
def rec(s, f):
    open(sys.argv[1], "w").write("USR1")
signal.signal(signal.SIGUSR1, rec)
open(sys.argv[1] + ".ready", "w").close()
end = time.monotonic() + 60
while time.monotonic() < end:
    time.sleep(0.05)
'''
kids = [subprocess.Popen([sys.executable, "-c", helper, f"{base}.{i}"]) for i in range(count)]
def rec(s, f):
    open(base + ".main", "w").write("USR1")
signal.signal(signal.SIGUSR1, rec)
signal.signal(signal.SIGTERM, lambda s, f: sys.exit(0))
end = time.monotonic() + 30
while not all(os.path.exists(f"{base}.{i}.ready") for i in range(count)):
    if time.monotonic() > end:
        sys.exit(4)
    time.sleep(0.01)
open(base + ".ready", "w").close()
end = time.monotonic() + 60
while time.monotonic() < end:
    time.sleep(0.05)
"""


@pytest.mark.parametrize("group", [True, False], ids=["group", "main-only"])
def test_group_reaches_the_whole_process_group(tmp_path: Path, group: bool) -> None:
    base = tmp_path / "g"
    opts = ["--group"] if group else []
    with Namespace(roost(*opts, "--", *py(GROUP, base, 3))) as ns:
        wait_for(lambda: exists(Path(f"{base}.ready")), what="group ready")
        ns.signal(_signal.SIGUSR1)
        wait_for(lambda: exists(Path(f"{base}.main")), what="main child got USR1")
        if group:
            wait_for(lambda: all(exists(Path(f"{base}.{i}")) for i in range(3)),
                     what="every group member got USR1")
        ns.signal(_signal.SIGTERM)
        assert finish(ns) == 0
    if not group:
        assert not any(Path(f"{base}.{i}").exists() for i in range(3))


# Main child: count USR1; write the count to argv[1] and exit 0 on TERM; touch argv[1].usr2
# on USR2.
COUNTER = r"""
import os, signal, sys, time
out = sys.argv[1]
count = 0
def usr1(s, f):
    global count
    count += 1
def usr2(s, f):
    open(out + ".usr2", "w").close()
def term(s, f):
    open(out, "w").write(str(count))
    sys.exit(0)
signal.signal(signal.SIGUSR1, usr1)
signal.signal(signal.SIGUSR2, usr2)
signal.signal(signal.SIGTERM, term)
open(out + ".ready", "w").close()
end = time.monotonic() + 60
while time.monotonic() < end:
    time.sleep(0.05)
sys.exit(3)
"""


def test_burst_of_1000_usr1(tmp_path: Path) -> None:
    out = tmp_path / "count"
    with Namespace(roost("--", *py(COUNTER, out)), stderr=subprocess.PIPE) as ns:
        wait_for(lambda: exists(Path(f"{out}.ready")), what="child ready")
        init = ns.init_pid
        for _ in range(1000):
            os.kill(init, _signal.SIGUSR1)
        # Still forwarding afterwards: no deadlock.
        ns.signal(_signal.SIGUSR2)
        wait_for(lambda: exists(Path(f"{out}.usr2")), what="USR2 after the burst")
        assert proc_state(init) in ("S", "R")
        ns.signal(_signal.SIGTERM)
        assert finish(ns) == 0
        assert ns.proc.stderr is not None
        assert ns.proc.stderr.read() == b""
    assert 1 <= int(out.read_text()) <= 1000


def test_realtime_signal_storm_does_not_hide_the_main_childs_exit(tmp_path: Path) -> None:
    # Real-time signals queue: each one reaches roost's wakeup pipe, which fills and drops
    # bytes. The main child exits during the storm; roost must still see that exit.
    rt = _signal.SIGRTMIN + 5
    hung = []
    for trial in range(3):
        ready = tmp_path / f"ready{trial}"
        script = f"trap '' {rt}; touch {ready}; sleep 0.5"
        with Namespace(roost("--", "sh", "-c", script)) as ns:
            init = ns.init_pid
            wait_for(lambda ready=ready: ready.exists(), what="child ready")
            start = time.monotonic()
            sent = 0
            while ns.proc.poll() is None and time.monotonic() - start < 1.5:
                try:
                    for _ in range(1000):
                        os.kill(init, rt)
                        sent += 1
                except ProcessLookupError:
                    break
            try:
                code = ns.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                hung.append((trial, sent))
                continue
            assert code == 0, (trial, code)
    assert not hung, f"roost missed its main child's exit after a storm (trial, sent): {hung}"


def test_verbose_logs_forwards_and_reaps() -> None:
    script = "sleep 0.1 & trap 'exit 0' USR1; kill -USR1 1; sleep 1 & wait"
    ran = run_ns(roost("-v", "--", "sh", "-c", script))
    assert ran.rc == 0, ran
    err = ran.err.splitlines()
    assert any(line.startswith("roost: started ") for line in err), err
    assert any(line.startswith("roost: forwarded SIGUSR1 to ") for line in err), err
    assert any(line.startswith("roost: reaped ") for line in err), err
    assert any(line.startswith("roost: main child ") and line.endswith("exited 0")
               for line in err), err


def test_quiet_without_verbose() -> None:
    ran = run_ns(roost("--", "sh", "-c", "sleep 0.1 & exit 0"))
    assert ran.rc == 0
    assert ran.err == ""


# -- what the child inherits --------------------------------------------------------------

# Wrapper that execs argv[2:] with signals argv[1] (comma-separated numbers) blocked and
# SIGINT, SIGHUP ignored, as a careless parent might leave them.
DIRTY_EXEC = r"""
import os, signal, sys
nums = [int(n) for n in sys.argv[1].split(",")]
signal.pthread_sigmask(signal.SIG_BLOCK, nums)
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGHUP, signal.SIG_IGN)
os.execv(sys.argv[2], sys.argv[2:])
"""


# Signals 32 and 33 belong to glibc (thread cancellation, setxid): no program can name them
# through libc, and glibc's posix_spawn leaves them ignored in the child it starts.
_GLIBC_INTERNAL = (1 << 31) | (1 << 32)


def _status_masks(text: str) -> dict[str, int]:
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    masks = {k: int(fields[k].strip(), 16) for k in ("SigBlk", "SigIgn", "SigPnd")}
    masks["SigIgn"] &= ~_GLIBC_INTERNAL
    return masks


@pytest.mark.parametrize("dirty", [False, True], ids=["clean-parent", "dirty-parent"])
def test_child_signal_mask_and_dispositions_are_clean(dirty: bool) -> None:
    argv = roost("--", "cat", "/proc/self/status")
    if dirty:
        argv = py(DIRTY_EXEC, f"{_signal.SIGUSR1},{_signal.SIGTERM}", *argv)
    ran = run_ns(argv)
    assert ran.rc == 0, ran
    assert _status_masks(ran.out) == {"SigBlk": 0, "SigIgn": 0, "SigPnd": 0}, ran.out


# Print every open fd >= 3 (fstat opens nothing, unlike listing /proc/self/fd).
OPEN_FDS = r"""
import os
found = []
for fd in range(3, 1024):
    try:
        os.fstat(fd)
    except OSError:
        continue
    found.append(str(fd))
print("fds:" + ",".join(found))
"""


def test_no_fd_leaks_to_the_child() -> None:
    r, w = os.pipe()
    extra = os.open("/dev/null", os.O_RDONLY)
    try:
        # roost itself inherits three extra fds (a pipe and /dev/null); none reaches the child.
        ran = run_ns(roost("--", *py(OPEN_FDS)), pass_fds=(r, w, extra))
    finally:
        for fd in (r, w, extra):
            os.close(fd)
    assert ran.rc == 0, ran
    assert ran.out.strip() == "fds:", ran


# Socket activation probe: report LISTEN_* and what fds 3.. are; wait for argv[1].
LISTEN_PROBE = r"""
import os, socket, sys, time
n = int(os.environ["LISTEN_FDS"])
names = [socket.socket(fileno=os.dup(3 + i)).getsockname() for i in range(n)]
print(os.environ["LISTEN_PID"], os.getpid(), n, *names, flush=True)
end = time.monotonic() + 60
while not os.path.exists(sys.argv[1]) and time.monotonic() < end:
    time.sleep(0.02)
"""

# Put the inherited fds argv[1] (comma-separated) at 3, 4, ... and exec argv[2:].
AT_THREE = r"""
import os, sys
fds = [int(f) for f in sys.argv[1].split(",")]
lifted = [os.dup(f) for f in fds]
for i, f in enumerate(lifted):
    if f != 3 + i:
        os.dup2(f, 3 + i)
    os.set_inheritable(3 + i, True)
for f in set(fds + lifted) - set(range(3, 3 + len(fds))):
    os.close(f)
os.execv(sys.argv[2], sys.argv[2:])
"""


def _socket_inodes(pid: int) -> set[str]:
    found = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:"):
            found.add(target)
    return found


def test_socket_activation(tmp_path: Path) -> None:
    go = tmp_path / "go"
    socks = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(2)]
    try:
        for i, s in enumerate(socks):
            s.bind(str(tmp_path / f"s{i}"))
            s.listen()
        fds = [s.fileno() for s in socks]
        ours = {f"socket:[{os.fstat(f).st_ino}]" for f in fds}
        env = dict(os.environ, LISTEN_PID="1", LISTEN_FDS="2", LISTEN_FDNAMES="a:b")
        argv = py(AT_THREE, ",".join(map(str, fds)), *roost("--", *py(LISTEN_PROBE, go)))
        with Namespace(argv, pass_fds=fds, env=env, stdout=subprocess.PIPE) as ns:
            assert ns.proc.stdout is not None
            report = ns.proc.stdout.readline().decode().split()
            # roost keeps none of the sockets it handed on.
            assert not _socket_inodes(ns.init_pid) & ours
            assert _socket_inodes(ns.init_pid) == set()
            go.touch()
            assert finish(ns) == 0
    finally:
        for s in socks:
            s.close()
    listen_pid, child_pid, count, *names = report
    assert listen_pid == child_pid != "1"
    assert count == "2"
    assert names == [str(tmp_path / "s0"), str(tmp_path / "s1")]


def test_listen_pid_of_another_process_is_left_alone() -> None:
    env = dict(os.environ, LISTEN_PID="12345", LISTEN_FDS="1")
    ran = run_ns(roost("--", "sh", "-c", 'echo "$LISTEN_PID $LISTEN_FDS"'), env=env)
    assert ran.rc == 0, ran
    assert ran.out == "12345 1\n"


# Report the cwd, then wait for argv[1].
CWD_PROBE = r"""
import os, sys, time
print(os.getcwd(), flush=True)
end = time.monotonic() + 60
while not os.path.exists(sys.argv[1]) and time.monotonic() < end:
    time.sleep(0.02)
"""


def test_roost_holds_root_as_cwd_and_child_keeps_the_start_directory(tmp_path: Path) -> None:
    go = tmp_path / "go"
    with Namespace(roost("--", *py(CWD_PROBE, go)), cwd=tmp_path, stdout=subprocess.PIPE) as ns:
        assert ns.proc.stdout is not None
        child_cwd = ns.proc.stdout.readline().decode().strip()
        assert os.readlink(f"/proc/{ns.init_pid}/cwd") == "/"
        go.touch()
        assert finish(ns) == 0
    assert child_cwd == str(tmp_path)


def test_closed_stdin_becomes_dev_null() -> None:
    # A runtime may start the init with fd 0 closed: the child gets /dev/null, not an error.
    argv = ["sh", "-c", 'exec 0<&-; exec "$@"', "sh",
            *roost("--", "sh", "-c", "readlink /proc/self/fd/0")]
    ran = run_ns(argv)
    assert ran.rc == 0, ran
    assert ran.out.strip() == "/dev/null"


def test_listen_fds_claimed_but_not_passed() -> None:
    # LISTEN_PID names roost but no fd was passed: roost must not mistake its own
    # descriptors for sockets (closing them would end its reactor).
    env = dict(os.environ, LISTEN_PID="1", LISTEN_FDS="4")
    ran = run_ns(roost("--", "sh", "-c", 'sleep 0.2; echo "$LISTEN_PID"'), env=env)
    assert ran.rc == 0, ran
    assert ran.err == ""
    assert ran.out == "1\n"  # not rewritten: the child is not handed any socket


def test_idle_roost_never_wakes(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    with Namespace(roost("--", *py(NO_HANDLER, ready))) as ns:
        wait_for(lambda: exists(ready), what="child ready")
        init = ns.init_pid
        wait_for(lambda: proc_state(init) == "S", what="roost asleep")
        before = voluntary_switches(init)
        time.sleep(1.5)
        # No timer, no tick: roost slept in epoll_wait the whole time.
        assert voluntary_switches(init) == before
        ns.signal(_signal.SIGTERM)
        assert finish(ns) == 143
