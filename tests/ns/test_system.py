"""`roost init` as PID 1 of PID namespaces: argv[0] dispatch, request signals, requests during
boot, and stage 3 (services stopped in order, leftovers TERM'd then KILL'd, mounts unmounted).

Every init here runs in fresh PID, mount, UTS and network namespaces (the abstract
@roost/control is per network namespace), and every client reaches it with nsenter.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.support import Namespace, require_unshare, wait_for

SRC = Path(__file__).resolve().parents[2] / "src"
# What reboot(2) does to a namespace's init, as its parent sees it.
POWEROFF_DEATH = -signal.SIGINT
REBOOT_DEATH = -signal.SIGHUP
RTMIN = signal.SIGRTMIN


def launcher(directory: Path) -> Path:
    """An executable `roost` (-IS, this checkout's source) plus the argv[0] names beside it."""
    directory.mkdir(parents=True, exist_ok=True)
    python = os.path.realpath(sys.executable)
    path = directory / "roost"
    path.write_text(f"#!{python} -IS\nimport sys\nsys.path.insert(0, {str(SRC)!r})\n"
                    "from roost.__main__ import main\nsys.exit(main())\n")
    path.chmod(0o755)
    for name in ("init", "poweroff", "reboot", "halt", "shutdown"):
        link = directory / name
        if not link.exists():
            link.symlink_to("roost")
    return path


def write_config(directory: Path, services: dict[str, str], settings: str = "") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in services.items():
        (directory / f"{name}.toml").write_text(textwrap.dedent(text))
    if settings:
        (directory / "roost.toml").write_text(textwrap.dedent(settings))
    return directory


class SystemNs:
    """`roost init -c CONFIG` as PID 1 of new PID, mount, UTS and network namespaces."""

    def __init__(self, tmp: Path, config: Path, *, argv0: str = "roost",
                 extra_unshare: tuple[str, ...] = ()):
        self.bin = tmp / "bin"
        self.roost = launcher(self.bin)
        self.log_path = tmp / "init.log"
        self.log_file = open(self.log_path, "wb")  # noqa: SIM115 - closed in close()
        argv = [str(self.bin / argv0)] + ([] if argv0 == "init" else ["init"])
        self.ns = Namespace([*argv, "-c", str(config)], uts=True,
                            extra_unshare=("--net", *extra_unshare),
                            stdin=subprocess.DEVNULL, stdout=self.log_file,
                            stderr=subprocess.STDOUT,
                            # unshare stays in the new mount namespace: a cwd of / lets
                            # pivot_root move it off the old root.
                            cwd="/")

    @property
    def pid(self) -> int:
        return self.ns.init_pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, pattern: str, timeout: float = 15.0) -> str:
        wait_for(lambda: re.search(pattern, self.log()), timeout=timeout,
                 what=f"{pattern!r} in the init's console:\n{self.log()}")
        return self.log()

    def client(self, *args: str, name: str = "roost", pid_ns: bool = False,
               timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run a roost client inside the init's network (and with pid_ns, PID+mount) namespace."""
        enter = ["nsenter", f"--target={self.pid}", "--net"]
        if pid_ns:
            enter += ["--pid", "--mount"]
        argv = [*enter, str(self.bin / name)]
        if name == "roost":
            argv.append(args[0])
            args = args[1:]
        return subprocess.run([*argv, *args], capture_output=True, text=True, timeout=timeout,
                              check=False, stdin=subprocess.DEVNULL)

    def wait(self, timeout: float = 30.0) -> int:
        return self.ns.wait(timeout)

    def close(self) -> None:
        self.ns.kill()
        self.log_file.close()


@pytest.fixture
def system(tmp_path: Path):
    """Factory for SystemNs instances, all torn down at the end of the test."""
    require_unshare()
    made: list[SystemNs] = []

    def make(config: Path, **kwargs: object) -> SystemNs:
        instance = SystemNs(tmp_path / f"ns{len(made)}", config, **kwargs)  # type: ignore[arg-type]
        made.append(instance)
        return instance

    yield make
    for instance in made:
        instance.close()


SLEEPER = """
    command = ["sleep", "300"]
"""


# -- argv[0] ---------------------------------------------------------------------------


def test_argv0_names_dispatch_to_the_system_commands(tmp_path: Path) -> None:
    require_unshare()
    roost = launcher(tmp_path / "bin")
    bin_dir = roost.parent

    def run(name: str, *args: str) -> subprocess.CompletedProcess[str]:
        # A network namespace of its own: nothing can answer on @roost/control there.
        return subprocess.run(["unshare", "--net", str(bin_dir / name), *args],
                              capture_output=True, text=True, timeout=30, check=False)

    for name, words in (("poweroff", "power off"), ("reboot", "reboot"), ("halt", "halt")):
        out = run(name, "--help")
        assert out.returncode == 0, out
        assert f"usage: {name}" in out.stdout and words in out.stdout, out.stdout
    out = run("shutdown", "--help")
    assert out.returncode == 0 and "usage: shutdown" in out.stdout, out
    out = run("shutdown", "-r", "+5")
    assert out.returncode == 2 and "only `now`" in out.stderr, out
    out = run("shutdown", "-c")
    assert out.returncode == 2 and "nothing to cancel" in out.stderr, out
    # Not PID 1: `init` refuses to do anything.
    out = run("init")
    assert out.returncode == 2 and "must run as PID 1" in out.stderr, out
    out = run("roost", "init")
    assert out.returncode == 2 and "must run as PID 1" in out.stderr, out
    # Nothing listens: the client keeps the request, retries, and says so at the deadline.
    t0 = time.monotonic()
    out = run("poweroff", "--timeout", "0.5")
    assert out.returncode == 1, out
    assert "no acknowledgement from init within 0.5s" in out.stderr, out
    assert time.monotonic() - t0 >= 0.5
    # `roost shutdown` is still "stop the services and exit" (the supervisor's command).
    out = run("roost", "shutdown", "--control", "@roost-test-nobody")
    assert out.returncode == 1 and "not running" in out.stderr, out


def test_init_by_argv0_and_shutdown_dash_r_reboots(tmp_path: Path, system) -> None:
    config = write_config(tmp_path / "cfg", {"sleeper": SLEEPER})
    init = system(config, argv0="init")
    init.wait_log(r"sleeper: up")
    # The supervisor's commands work against init as against `roost up`.
    status = init.client("status", "--control", "@roost/control")
    assert status.returncode == 0 and re.search(r"sleeper\s+up", status.stdout), status
    out = init.client("-r", "now", name="shutdown")
    assert out.returncode == 0, out
    assert "reboot: acknowledged by init" in out.stdout
    assert init.wait() == REBOOT_DEATH, init.log()
    log = init.log()
    assert "reboot requested by" in log
    assert "sleeper: down" in log


@pytest.mark.parametrize("name,kind", [("poweroff", "poweroff"), ("halt", "halt"),
                                       ("reboot", "reboot")])
def test_argv0_request_names(tmp_path: Path, system, name: str, kind: str) -> None:
    config = write_config(tmp_path / "cfg", {"sleeper": SLEEPER})
    init = system(config)
    init.wait_log(r"sleeper: up")
    out = init.client(name=name)
    assert out.returncode == 0, out
    assert f"{kind}: acknowledged by init" in out.stdout
    expected = REBOOT_DEATH if kind == "reboot" else POWEROFF_DEATH
    assert init.wait() == expected, init.log()
    assert f"{kind} requested by" in init.log()


def test_supervisor_refuses_power_requests(tmp_path: Path) -> None:
    """`roost up` is not init: a power request gets a clear refusal."""
    require_unshare()
    roost = launcher(tmp_path / "bin")
    config = write_config(tmp_path / "cfg", {"sleeper": SLEEPER})
    with Namespace(["sh", "-c", f"{roost} up -c {config} --control @roost/control & "
                    f"sleep 2; {roost} poweroff --timeout 5; echo rc=$?; "
                    f"{roost} shutdown --control @roost/control; wait"],
                   extra_unshare=("--net",), stdout=subprocess.PIPE,
                   stderr=subprocess.STDOUT, text=True) as ns:
        out, _ = ns.proc.communicate(timeout=30)
    assert "not the system's init" in out, out
    assert "rc=1" in out, out


# -- signals ---------------------------------------------------------------------------

SIGNALS = [
    (signal.SIGINT, "reboot", REBOOT_DEATH),  # Ctrl-Alt-Del
    (signal.SIGTERM, "reboot", REBOOT_DEATH),  # busybox reboot
    (signal.SIGUSR1, "halt", POWEROFF_DEATH),  # busybox halt
    (signal.SIGUSR2, "poweroff", POWEROFF_DEATH),  # busybox poweroff
    (signal.SIGPWR, "poweroff", POWEROFF_DEATH),  # power failure, LXC
    (RTMIN + 3, "halt", POWEROFF_DEATH),  # systemd halt
    (RTMIN + 4, "poweroff", POWEROFF_DEATH),  # systemd poweroff
    (RTMIN + 5, "reboot", REBOOT_DEATH),  # systemd reboot
    (RTMIN + 6, "kexec", REBOOT_DEATH),  # systemd kexec (a reboot in a namespace)
]


@pytest.mark.parametrize("signum,kind,death", SIGNALS,
                         ids=[signal.Signals(s).name if s < RTMIN else f"RTMIN+{s - RTMIN}"
                              for s, _, _ in SIGNALS])
def test_request_signals(tmp_path: Path, system, signum: int, kind: str, death: int) -> None:
    config = write_config(tmp_path / "cfg", {"sleeper": SLEEPER})
    init = system(config)
    init.wait_log(r"sleeper: up")
    os.kill(init.pid, signum)
    assert init.wait() == death, init.log()
    log = init.log()
    assert re.search(rf"{kind} requested by SIG", log), log
    assert "sleeper: down" in log
    assert "stage 3" in log


def test_signal_sent_before_handlers_is_kept(tmp_path: Path, system) -> None:
    """A request signal that arrives while roost is still importing waits, blocked, and wins."""
    config = write_config(tmp_path / "cfg", {"sleeper": SLEEPER})
    init = system(config)
    pid = init.pid
    # Once the interpreter has run roost.early the signal is blocked, not dropped: wait for
    # that (SigBlk in /proc), then signal before the reactor has installed any handler.
    def blocked() -> bool:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return False
        mask = int(re.search(r"SigBlk:\s*([0-9a-f]+)", status).group(1), 16)  # type: ignore[union-attr]
        return bool(mask & (1 << (signal.SIGUSR2 - 1)))

    wait_for(blocked, timeout=10, interval=0.0005, what="roost.early's signal mask")
    os.kill(pid, signal.SIGUSR2)
    assert init.wait() == POWEROFF_DEATH, init.log()
    log = init.log()
    assert "poweroff requested by SIGUSR2 during boot" in log, log
    assert "sleeper: up" not in log, log


def test_via_signal_waits_for_the_zombie_probe(tmp_path: Path, system) -> None:
    """`poweroff --via-signal` started with init: the probe holds the signal until PID 1 reaps."""
    config = write_config(tmp_path / "cfg", {"sleeper": SLEEPER})
    init = system(config)
    out = init.client("--via-signal", name="poweroff", pid_ns=True)
    # The client lives in the namespace: stage 3 may TERM it right after it has signalled.
    assert out.returncode in (0, -signal.SIGTERM), (out, init.log())
    assert "signalled PID 1" in out.stdout, (out, init.log())
    assert init.wait() == POWEROFF_DEATH, init.log()
    assert "poweroff requested by SIGUSR2" in init.log()


# -- requests during boot ------------------------------------------------------------------


def test_request_during_boot_abandons_the_start_sequence(tmp_path: Path, system) -> None:
    marker = tmp_path / "after-started"
    config = write_config(tmp_path / "cfg", {
        "slow": """
            type = "oneshot"
            command = ["sleep", "30"]
        """,
        "after": f"""
            requires = ["slow"]
            command = ["sh", "-c", "touch {marker}; exec sleep 300"]
        """,
    })
    init = system(config)
    init.wait_log(r"slow: starting")
    t0 = time.monotonic()
    out = init.client("poweroff")
    assert out.returncode == 0, out
    assert init.wait() == POWEROFF_DEATH, init.log()
    elapsed = time.monotonic() - t0
    log = init.log()
    assert "poweroff requested by" in log
    assert "after: starting" not in log, log
    assert not marker.exists()
    assert elapsed < 20, f"the slow oneshot was waited for: {elapsed:.1f}s\n{log}"


def test_second_request_is_acknowledged_with_the_first(tmp_path: Path, system) -> None:
    config = write_config(tmp_path / "cfg", {"stubborn": """
        command = ["sh", "-c", "trap '' TERM; while :; do sleep 0.1; done"]
        stop_timeout = 3
    """})
    init = system(config)
    init.wait_log(r"stubborn: up")
    first = init.client("poweroff")
    second = init.client("reboot")
    assert first.returncode == 0 and second.returncode == 0, (first, second)
    assert "already carrying out poweroff" in second.stdout, second.stdout
    assert init.wait() == POWEROFF_DEATH, init.log()


# -- stage 3 --------------------------------------------------------------------------------


def test_stage3_stops_in_order_then_terms_and_kills_leftovers(tmp_path: Path, system) -> None:
    got_term = tmp_path / "got-term"
    config = write_config(tmp_path / "cfg", {
        "base": SLEEPER,
        "middle": 'requires = ["base"]\n' + SLEEPER,
        "top": 'requires = ["middle"]\n' + SLEEPER,
    }, settings="kill_timeout = 1.5\n")
    init = system(config)
    init.wait_log(r"top: up")
    # Processes of no service (as an administrator's session would leave): one exits on TERM
    # and says so, one ignores TERM and must be KILLed.
    ready = tmp_path / "trapped"
    leftovers = subprocess.Popen(
        ["nsenter", f"--target={init.pid}", "--pid", "--mount", "sh", "-c",
         f"sh -c 'trap \"echo term > {got_term}; exit 0\" TERM; touch {ready}; "
         f"while :; do sleep 0.05; done' & sh -c 'trap \"\" TERM; touch {ready}.ignoring; "
         "exec sleep 1000' & wait"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # Both in their final state: the trap installed, and `sleep` exec'd (TERM ignored).
        # TERM is ignored before the second one touches its file, and SIG_IGN survives exec.
        wait_for(lambda: ready.exists() and Path(f"{ready}.ignoring").exists(),
                 timeout=10, what="the leftover processes")
        out = init.client("poweroff")
        assert out.returncode == 0, out
        assert init.wait() == POWEROFF_DEATH, init.log()
    finally:
        leftovers.kill()
        leftovers.wait(timeout=10)
    log = init.log()
    order = [log.index(f"{name}: down") for name in ("top", "middle", "base")]
    assert order == sorted(order), log
    assert re.search(r"sending TERM to \d+ process", log), log
    assert got_term.read_text().strip() == "term"
    assert re.search(r"sending KILL to 1 process still running after 1.5s: sleep\(\d+\)", log), log
    assert "every process left has been killed" in log
    assert log.index("every process left has been killed") < log.index("powering off")


def test_stage3_unmounts_what_was_mounted_inside(tmp_path: Path) -> None:
    """Mounts made inside the namespace are gone after stage 3: seen from the outside.

    An outer namespace (PID 1 of its own, so its mounts are private) shares one tmpfs with
    roost's namespace; a service mounts inside it, which the outer side sees. The kernel
    does not propagate the unmounts of a dying namespace, so only roost's own teardown can
    make the mount disappear outside.
    """
    require_unshare()
    roost = launcher(tmp_path / "bin")
    shared = tmp_path / "shared"
    result = tmp_path / "result"
    config = write_config(tmp_path / "cfg", {
        "mounter": f"""
            type = "oneshot"
            command = ["sh", "-c", "mkdir -p $0/inner && mount -t tmpfs inner $0/inner", "{shared}"]
        """,
        "sleeper": 'requires = ["mounter"]\n' + SLEEPER,
    })
    script = f"""
        mkdir -p {shared}
        mount -t tmpfs outer {shared} && mount --make-shared {shared} || exit 3
        unshare --pid --fork --mount-proc --net --kill-child --propagation unchanged \\
            {roost} init -c {config} > {tmp_path}/init.log 2>&1 &
        i=0
        until grep -q " {shared}/inner " /proc/self/mountinfo; do
            i=$((i + 1)); [ $i -gt 200 ] && exit 4; sleep 0.05
        done
        echo seen-outside > {result}
        sleep 0.5
        target=$(pgrep -P $! | head -1)
        nsenter --target=$target --net {roost} poweroff > {tmp_path}/client.log 2>&1
        wait $!
        echo "init-status=$?" >> {result}
        if grep -q " {shared}/inner " /proc/self/mountinfo; then
            echo still-mounted >> {result}
        else
            echo unmounted >> {result}
        fi
    """
    with Namespace(["sh", "-c", textwrap.dedent(script)], stdout=subprocess.PIPE,
                   stderr=subprocess.STDOUT, text=True) as ns:
        out, _ = ns.proc.communicate(timeout=60)
    log = (tmp_path / "init.log").read_text()
    assert ns.proc.returncode == 0, (out, log)
    lines = result.read_text().split()
    assert lines[0] == "seen-outside", (lines, log)
    assert lines[1] == f"init-status={128 + signal.SIGINT}", (lines, log)
    assert lines[2] == "unmounted", (lines, log)
    assert re.search(rf"unmounted .*{re.escape(str(shared))}/inner", log), log


def test_namespace_init_never_remounts_or_touches_host_mounts(tmp_path: Path, system) -> None:
    """In a namespace roost unmounts only what appeared after it started; it remounts nothing."""
    config = write_config(tmp_path / "cfg", {"sleeper": SLEEPER})
    init = system(config)
    init.wait_log(r"sleeper: up")
    before = Path(f"/proc/{init.pid}/mountinfo").read_text()
    assert init.client("halt").returncode == 0
    assert init.wait() == POWEROFF_DEATH
    log = init.log()
    made = set()
    for line in log.splitlines():
        if "roost: mounted " in line:
            made |= set(line.split("roost: mounted ", 1)[1].split())
    unmounted = set()
    for line in log.splitlines():
        if "roost: unmounted " in line:
            unmounted |= set(line.split("roost: unmounted ", 1)[1].split(",")[0].split())
    assert unmounted == made, log
    assert "read-only" not in log, log
    assert "/" not in unmounted and "/proc" not in unmounted
    assert before  # the namespace had the host's mounts, untouched


def test_finale_pivots_into_a_tmpfs_and_unmounts_the_old_root(tmp_path: Path, system) -> None:
    """`finale = "always"`: the whole pivot path, inside the namespace's own mounts.

    The old root can only be unmounted if nothing of PID 1 (executable, libraries, open
    files, cwd) is left on it after the re-exec from the tmpfs.
    """
    config = write_config(tmp_path / "cfg", {"sleeper": SLEEPER}, settings='finale = "always"\n')
    init = system(config)
    init.wait_log(r"sleeper: up")
    assert init.client("poweroff").returncode == 0
    assert init.wait() == POWEROFF_DEATH, init.log()
    log = init.log()
    assert "shutdown tmpfs ready at /run" in log, log
    assert "pivoted into the shutdown tmpfs" in log, log
    assert "finale: running from a tmpfs as PID 1" in log, log
    assert "finale: unmounted /\n" in log, log
    assert "finale: every filesystem is unmounted" in log, log


def test_invalid_configuration_runs_the_emergency_shell_and_still_powers_off(
        tmp_path: Path, system) -> None:
    """A configuration nothing of which can start runs the emergency shell; init goes on."""
    marker = tmp_path / "shell-ran"
    shell = tmp_path / "emergency"
    shell.write_text(f"#!/bin/sh\necho \"emergency shell pid $$\" > {marker}\n")
    shell.chmod(0o755)
    config = write_config(tmp_path / "cfg", {
        "broken": 'command = ["sleep", "300"]\nrestart = "sometimes"\n',
        "dependent": 'command = ["sleep", "300"]\nrequires = ["broken"]\n',
    }, settings=f'emergency_shell = "{shell}"\n')
    init = system(config)
    init.wait_log(r"no service started")
    init.wait_log(r"emergency shell ended \(exited 0\)")
    assert marker.read_text().startswith("emergency shell pid")
    # Still init: it answers, and carries a request out.
    out = init.client("poweroff")
    assert out.returncode == 0, out
    assert init.wait() == POWEROFF_DEATH, init.log()
    log = init.log()
    assert "broken.toml" in log and "restart" in log, log
    assert "dependent: up" not in log, log
