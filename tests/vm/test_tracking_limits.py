"""Resource limits on a real kernel with every cgroup controller: memory_max, pids_max, cpu_weight.

The host's cgroup2 hierarchy has no memory or pids controller, so these run in the VM. A
small guest PID 1 mounts the API filesystems and cgroup2, runs `roost up` with a cgroup
directory of its own (ROOST_CGROUP=/sys/fs/cgroup/roost) and reports what it sees:

* a service that allocates without end, under memory_max = 32M, is OOM-killed inside its
  cgroup and nothing else is;
* a fork bomb under pids_max = 16 never has more than 16 processes, roost still answers,
  and a stop leaves its cgroup empty;
* cpu_weight reaches cpu.weight;
* roost removes the cgroup directory it made when it exits.
"""

from __future__ import annotations

import json

import pytest

from . import harness

GUEST_INIT = "/usr/local/bin/trk-init"

INIT = r'''
import ctypes, json, os, socket, subprocess, sys, time
sys.path.insert(0, "/usr/lib/roost-vm")
import say

libc = ctypes.CDLL(None, use_errno=True)


def mount(src, target, fstype, data=None):
    os.makedirs(target, exist_ok=True)
    if libc.mount(src.encode(), target.encode(), fstype.encode(), 0,
                  data.encode() if data else None) != 0:
        say.say("mount-failed", target, os.strerror(ctypes.get_errno()))


def call(cmd, **args):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(30)
        s.connect("\0roost-vm")
        s.sendall(json.dumps({"v": 1, "id": 1, "cmd": cmd, "args": args}).encode() + b"\n")
        buf = b""
        while b"\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    return json.loads(buf.split(b"\n", 1)[0]).get("result")


def status(name):
    return call("status", services=[name])[0]


def wait(pred, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = pred()
        except OSError:
            value = None
        if value:
            return value
        time.sleep(0.05)
    return None


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError as exc:
        return f"unreadable: {exc.strerror}"


def main():
    mount("proc", "/proc", "proc")
    mount("sysfs", "/sys", "sysfs")
    mount("cgroup2", "/sys/fs/cgroup", "cgroup2")
    mount("tmpfs", "/run", "tmpfs")
    mount("tmpfs", "/tmp", "tmpfs")
    say.say("controllers", read("/sys/fs/cgroup/cgroup.controllers").strip())
    base = "/sys/fs/cgroup/roost"
    env = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "ROOST_CGROUP": base}
    log = open("/tmp/roost.log", "wb")
    roost = subprocess.Popen(["/usr/bin/roost", "up", "-c", "/etc/roost", "--control",
                              "@roost-vm", "-v"], env=env, stdout=log, stderr=subprocess.STDOUT)
    if not wait(lambda: call("ping")):
        say.say("roost", "no answer")
    else:
        for name in ("hog", "bomb", "weighted"):
            wait(lambda n=name: status(n)["state"] in ("up", "failed"))
        r = status("weighted")
        say.say("tracking", r["tracking"])
        say.say("weight", read(f"{base}/weighted.service/cpu.weight").strip())
        r = wait(lambda: status("hog")["state"] == "failed" and status("hog"))
        say.say("hog", (r or {}).get("state"), "|", (r or {}).get("last_exit"))
        events = read(f"{base}/hog.service/memory.events")
        say.say("hog-oom-kills", dict(l.split() for l in events.splitlines()).get("oom_kill"))
        say.say("hog-max", read(f"{base}/hog.service/memory.max").strip())
        # The bomb forks until the kernel refuses: it never grows past pids.max.
        wait(lambda: "max" in read(f"{base}/bomb.service/pids.events") and
             int(dict(l.split() for l in read(f"{base}/bomb.service/pids.events")
                      .splitlines()).get("max", "0")) > 0, timeout=60)
        counts = []
        for _ in range(10):
            counts.append(len(read(f"{base}/bomb.service/cgroup.procs").split()))
            time.sleep(0.05)
        say.say("bomb-max-procs", max(counts))
        t0 = time.monotonic()
        alive = call("ping") is not None
        say.say("ping-during-bomb", alive, f"{(time.monotonic() - t0) * 1000:.0f}ms")
        tree = call("tree", services=["bomb"])["services"][0]
        say.say("bomb-tree", len(tree["processes"]), tree["cgroup"])
        call("stop", services=["bomb"], timeout=60)
        say.say("bomb-after-stop", status("bomb")["state"],
                len(read(f"{base}/bomb.service/cgroup.procs").split()))
        call("shutdown")
    try:
        roost.wait(timeout=60)
    except subprocess.TimeoutExpired:
        roost.kill()
    say.say("roost-exit", roost.returncode)
    say.say("base-left", os.path.exists(base))
    log.close()
    for line in read("/tmp/roost.log").splitlines()[-40:]:
        say.say("log", line)
    os.sync()
    libc.reboot(0x4321FEDC)


try:
    main()
finally:
    say.debug_exit(3)
'''

HOG = "x = []\nwhile True:\n    x.append(bytearray(1 << 20))\n"
BOMB = ("import os, time\n"
        "while True:\n"
        "    try:\n"
        "        if os.fork() == 0:\n"
        "            continue\n"
        "    except OSError:\n"
        "        time.sleep(0.01)\n")


def _service(command: list[str], *extra: str) -> str:
    # A JSON array of strings is a TOML array too.
    return "\n".join(["command = " + json.dumps(command), *extra]) + "\n"


@pytest.mark.vm
@pytest.mark.timeout(240)
def test_limits_contain_a_memory_hog_and_a_fork_bomb(vm: harness.VM) -> None:
    py = harness.GUEST_PYTHON
    image = vm.build(extra_files={
        GUEST_INIT: harness.script(INIT),
        "/etc/roost/hog.toml": _service([py, "-c", HOG], 'memory_max = "32M"',
                                        'restart = "never"'),
        "/etc/roost/bomb.toml": _service([py, "-c", BOMB], "pids_max = 16",
                                         'restart = "never"', "stop_timeout = 2"),
        "/etc/roost/weighted.toml": _service([py, "-c", "import time; time.sleep(600)"],
                                             "cpu_weight = 50"),
    })
    result = vm.boot(image, init=GUEST_INIT, deadline=200)
    why = result.describe()
    controllers = set((result.value("controllers") or "").split())
    if not {"memory", "pids", "cpu"} <= controllers:
        pytest.skip(f"SKIPPED: the guest kernel offers only {sorted(controllers)}")
    assert result.value("tracking") == "cgroup", why
    assert result.value("weight") == "50", why
    assert result.value("hog-max") == str(32 << 20), why
    assert result.value("hog") == "failed | killed by SIGKILL", why
    assert int(result.value("hog-oom-kills") or 0) >= 1, why
    assert 0 < int(result.value("bomb-max-procs") or 0) <= 16, why
    assert (result.value("ping-during-bomb") or "").startswith("True"), why
    assert (result.value("bomb-tree") or "").endswith("/sys/fs/cgroup/roost/bomb.service"), why
    assert result.value("bomb-after-stop") == "down 0", why
    assert result.value("roost-exit") == "0", why
    assert result.value("base-left") == "False", why
    assert result.shutdown == "poweroff", why
