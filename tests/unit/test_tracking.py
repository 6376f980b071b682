"""The pure parts of tracking: event parsing, the pid map, the lineage scan, mountinfo."""

from __future__ import annotations

import os
import struct
from pathlib import Path

from roost.kernel.proc import ProcStat
from roost.supervise.forking import top_level
from roost.tracking import cgroup as cg
from roost.tracking import connector as cn
from roost.tracking.lineage import Lineage


def datagram(what: int, a: int, b: int, c: int = 0, d: int = 0) -> bytes:
    event = struct.pack("=IIQ", what, 0, 123) + struct.pack("=iiii", a, b, c, d) + bytes(8)
    msg = struct.pack("=IIIIHH", cn.CN_IDX_PROC, cn.CN_VAL_PROC, 0, 0, len(event), 0) + event
    return struct.pack("=IHHII", 16 + len(msg), cn.NLMSG_DONE, 0, 0, 0) + msg


def test_parse_keeps_process_forks_and_exits_and_drops_threads() -> None:
    assert cn.parse(datagram(cn.PROC_EVENT_FORK, 10, 10, 11, 11)) == [(cn.FORK, 10, 11)]
    # A new thread: child pid differs from its tgid.
    assert cn.parse(datagram(cn.PROC_EVENT_FORK, 10, 10, 12, 10)) == []
    assert cn.parse(datagram(cn.PROC_EVENT_EXIT, 11, 11, 0, 17)) == [(cn.EXIT, 11, 0)]
    # A thread exiting is not the process exiting.
    assert cn.parse(datagram(cn.PROC_EVENT_EXIT, 12, 10, 0, 0)) == []
    assert cn.parse(datagram(0x2, 11, 11)) == []  # exec
    both = datagram(cn.PROC_EVENT_FORK, 1, 1, 2, 2) + datagram(cn.PROC_EVENT_EXIT, 2, 2)
    assert cn.parse(both) == [(cn.FORK, 1, 2), (cn.EXIT, 2, 0)]
    assert cn.parse(b"\0" * 10) == []


def test_the_pid_map_follows_every_fork_and_forgets_every_exit() -> None:
    me = os.getpid()
    pm = cn.PidMap(me)
    pm.expect("web", 100)
    for event in [(cn.FORK, me, 100), (cn.FORK, 100, 101), (cn.FORK, 101, 102),
                  (cn.EXIT, 101, 0), (cn.FORK, 999, 500)]:
        pm.apply(event)
    assert pm.pids("web") == [100, 102]
    assert pm.count("web") == 2
    assert pm.service_of(101) is None  # exited
    assert pm.service_of(500) is None  # a stranger's fork


def test_the_pid_map_says_which_service_an_exit_left_and_ignores_strangers() -> None:
    me = os.getpid()
    pm = cn.PidMap(me)
    pm.expect("web", 100)
    pm.apply((cn.FORK, me, 100))
    assert pm.apply((cn.FORK, 100, 101)) is None
    assert pm.apply((cn.EXIT, 777, 0)) is None  # never mapped
    assert pm.apply((cn.EXIT, 101, 0)) == "web"
    assert pm.apply((cn.EXIT, 101, 0)) is None  # already gone
    assert pm.apply((cn.EXIT, 100, 0)) == "web"
    assert pm.count("web") == 0
    assert pm.pids("web") == []


def test_only_a_spawn_roost_expects_is_taken_from_its_own_forks() -> None:
    me = os.getpid()
    pm = cn.PidMap(me)
    pm.expect("web", 100)
    pm.apply((cn.FORK, me, 200))  # roost forked something else (a reader, a helper)
    assert pm.service_of(200) is None
    pm.apply((cn.FORK, me, 100))
    assert pm.service_of(100) == "web"
    # Seen by its fork event: confirming it again changes nothing, even "dead".
    pm.confirm(100, alive=False)
    assert pm.service_of(100) == "web"


def test_a_spawn_whose_fork_event_was_not_read_is_mapped_only_if_alive() -> None:
    pm = cn.PidMap(os.getpid())
    pm.expect("web", 100)
    pm.confirm(100, alive=True)
    assert pm.pids("web") == [100]
    pm.expect("api", 300)
    pm.confirm(300, alive=False)
    assert pm.pids("api") == []
    # No longer awaited: a late fork event does not map it.
    pm.apply((cn.FORK, os.getpid(), 300))
    assert pm.service_of(300) is None


def test_a_new_instance_drops_the_old_ones_pids_and_drop_forgets_a_service() -> None:
    me = os.getpid()
    pm = cn.PidMap(me)
    pm.expect("web", 100)
    pm.apply((cn.FORK, me, 100))
    pm.apply((cn.FORK, 100, 101))
    pm.expect("web", 200)
    assert pm.pids("web") == []
    assert pm.service_of(101) is None
    pm.apply((cn.FORK, me, 200))
    assert pm.pids("web") == [200]
    pm.drop("web")
    assert pm.service_of(200) is None
    assert pm.pids("web") == []


def test_an_old_owner_exiting_before_a_pid_is_reused_never_unmaps_the_new_one() -> None:
    # PID 100 was a worker of "old"; it exits; roost spawns "new" and gets PID 100.
    # The events are read in order, so the exit cannot remove the new process.
    me = os.getpid()
    pm = cn.PidMap(me)
    pm.expect("old", 100)
    pm.apply((cn.FORK, me, 100))
    pm.expect("new", 100)
    for event in [(cn.EXIT, 100, 0), (cn.FORK, me, 100), (cn.FORK, 100, 101)]:
        pm.apply(event)
    assert pm.pids("new") == [100, 101]
    assert pm.pids("old") == []


# Made-up PIDs and sessions far above this machine's own: the resync's scan leaves out
# the test process's own session and group, which these must never be.
P = 4_000_000


def test_a_resync_rebuilds_the_map_from_a_snapshot() -> None:
    me = os.getpid()
    pm = cn.PidMap(me)
    pm.expect("web", P + 10)
    pm.apply((cn.FORK, me, P + 10))
    pm.apply((cn.FORK, P + 10, P + 11))
    pm.expect("gone", P + 30)
    pm.apply((cn.FORK, me, P + 30))
    # Lost on the way: the fork of P+12 (a child of P+10) and the exits of P+11 and P+30.
    snapshot = table(st(P + 10, me, P + 10, start=5),
                     st(P + 12, P + 10, P + 12, start=7),    # setsid'd child of a member
                     st(P + 13, P + 10, P + 10, start=8, state="Z"),  # a zombie: not mapped
                     st(P + 50, 1, P + 50, start=9))         # someone else
    pm.resync(snapshot)
    assert pm.pids("web") == [P + 10, P + 12]
    assert pm.pids("gone") == []
    assert pm.service_of(P + 50) is None
    # Events after the resync apply to the rebuilt map.
    pm.apply((cn.FORK, P + 12, P + 14))
    assert pm.service_of(P + 14) == "web"


def st(pid: int, ppid: int, sid: int, pgid: int | None = None, start: int = 1,
       state: str = "S") -> ProcStat:
    return ProcStat(pid, f"p{pid}", state, ppid, pgid if pgid is not None else sid, sid, start)


def table(*stats: ProcStat) -> dict[int, ProcStat]:
    return {s.pid: s for s in stats}


def test_lineage_follows_sessions_and_parents() -> None:
    lin = Lineage(me=1)
    lin.own_ids = {1}
    lin.known["svc"] = {10: 5}
    lin.ids["svc"] = {10}
    t = table(st(1, 0, 1), st(10, 1, 10, start=5), st(11, 10, 10, start=6),
              st(12, 11, 12, start=7),   # setsid'd grandchild: found through its parent
              st(13, 1, 10, start=8),    # re-parented to roost, still in the session
              st(20, 1, 20, start=9))    # someone else
    owner = lin.scan(t)
    assert {p for p, n in owner.items() if n == "svc"} == {10, 11, 12, 13}
    # The grandchild's session is the service's from now on, and survives its parent.
    assert 12 in lin.ids["svc"]
    t2 = table(st(1, 0, 1), st(12, 1, 12, start=7), st(14, 1, 12, start=10))
    assert {p for p, n in lin.scan(t2).items() if n == "svc"} == {12, 14}


def test_lineage_never_takes_a_recycled_pid_or_session() -> None:
    lin = Lineage(me=1)
    lin.own_ids = {1}
    lin.known["svc"] = {10: 5}
    lin.ids["svc"] = {10}
    lin.scan(table(st(1, 0, 1), st(10, 1, 10, start=5)))
    # 10 is gone; a stranger now has PID 10 and leads its own session 10.
    owner = lin.scan(table(st(1, 0, 1), st(10, 1, 10, start=50), st(11, 10, 10, start=51)))
    assert owner == {}
    assert lin.ids["svc"] == set()


def test_lineage_claims_what_came_home_when_a_spawned_process_exits() -> None:
    lin = Lineage(me=1)
    lin.own_ids = {1}
    lin.started("svc", 10)  # no such process here: nothing known
    lin.claim("svc", since=5)
    owner = lin.scan(table(st(1, 0, 1), st(30, 1, 30, start=4), st(31, 1, 31, start=6)))
    # Born after the exited process: its orphan. Born before: not the service's.
    assert owner == {31: "svc"}


def test_tops_are_the_members_without_a_member_parent() -> None:
    members = [st(5, 1, 5), st(6, 5, 5), st(7, 6, 5), st(9, 1, 9)]
    assert [s.pid for s in top_level(members)] == [5, 9]


def test_mountinfo_finds_cgroup2_mounts(tmp_path: Path) -> None:
    info = tmp_path / "mountinfo"
    info.write_text(
        "30 25 0:26 / /sys/fs/cgroup rw,nosuid - tmpfs tmpfs ro\n"
        "35 30 0:31 / /sys/fs/cgroup/unified rw,nosuid,relatime - cgroup2 cgroup2 rw\n"
        "36 30 0:32 /.. /sys/fs/cgroup/old ro,relatime - cgroup2 cgroup2 rw\n"
        "37 30 0:33 / /mnt/with\\040space rw - cgroup2 none rw\n")
    assert cg.mounts(str(info)) == [("/sys/fs/cgroup/unified", "/", True),
                                    ("/sys/fs/cgroup/old", "/..", False),
                                    ("/mnt/with space", "/", True)]
