"""The kernel's process events (proc connector): every fork and exit, in the order they happen.

A netlink socket (NETLINK_CONNECTOR, group CN_IDX_PROC) receives one datagram per
event, queued synchronously by the kernel while the fork or the exit happens. So
the membership map built from fork events is exact: a child's fork event is queued
before anything the child can do, and a member's exit event is queued before its
PID can be freed and handed to someone else.

The connector is usable only where its PIDs are ours: inside a PID namespace the
kernel either sends nothing or sends the initial namespace's PIDs. `probe` finds
out by starting a thread and looking for that very creation in the stream.

`Connector` is the socket, `PidMap` the map its events build, and `ConnectorMeans`
the means the tracker uses.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import struct

from roost.kernel import console, proc
from roost.kernel.loop import READ
from roost.tracking.lineage import Lineage
from roost.tracking.means import CONNECTOR, Means

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from roost.kernel.loop import Loop
    from roost.kernel.proc import ProcStat

NETLINK_CONNECTOR = 11
CN_IDX_PROC = 1
CN_VAL_PROC = 1
PROC_CN_MCAST_LISTEN = 1
PROC_EVENT_FORK = 0x00000001
PROC_EVENT_EXIT = 0x80000000
NLMSG_DONE = 3
SO_RCVBUFFORCE = 33

_NLMSG = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_CN_MSG = struct.Struct("=IIIIHH")  # idx, val, seq, ack, len, flags
_EVENT = struct.Struct("=IIQ")  # what, cpu, timestamp_ns
_PIDS = struct.Struct("=iiii")  # the first four PID fields of a fork or exit event
_EVENT_AT = _NLMSG.size + _CN_MSG.size
_DATA_AT = _EVENT_AT + _EVENT.size

# Asking the kernel (6.6 and later) to send forks and exits only: a machine's
# exec, uid, comm... events would cost roost a wake-up each for nothing.
_WANTED = PROC_EVENT_FORK | PROC_EVENT_EXIT

# The socket's receive buffer: a fork storm queues faster than a busy roost reads.
RCVBUF = 8 << 20

# How long `probe` waits for the probe child's fork event when nothing at all has
# arrived: the kernel queues it inside fork(), before fork() returns to roost.
PROBE_WAIT = 0.005

FORK = "fork"
EXIT = "exit"

Event = tuple[str, int, int]  # (FORK, parent tgid, child tgid) or (EXIT, tgid, 0)


def parse(data: bytes) -> list[Event]:
    """The process-level forks and exits in one datagram (threads are left out)."""
    events: list[Event] = []
    offset = 0
    while offset + _DATA_AT + _PIDS.size <= len(data):
        length = _NLMSG.unpack_from(data, offset)[0]
        if length < _DATA_AT:
            break
        what = _EVENT.unpack_from(data, offset + _EVENT_AT)[0]
        a, b, c, d = _PIDS.unpack_from(data, offset + _DATA_AT)
        if what == PROC_EVENT_FORK and c == d:
            # (parent pid, parent tgid, child pid, child tgid): a new thread has
            # child pid != child tgid and is not a new process.
            events.append((FORK, b, d))
        elif what == PROC_EVENT_EXIT and a == b:
            events.append((EXIT, b, 0))
        offset += (length + 3) & ~3
    return events


def _subscribe(filtered: bool) -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK,
                         socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC,
                         NETLINK_CONNECTOR)
    try:
        for option in (SO_RCVBUFFORCE, socket.SO_RCVBUF):
            try:
                sock.setsockopt(socket.SOL_SOCKET, option, RCVBUF)
                break
            except OSError:
                continue
        sock.bind((0, CN_IDX_PROC))
        # Kernels before 6.6 ignore a listen request that is not exactly one u32:
        # the filtered form is tried first, the probe tells whether it took.
        payload = (struct.pack("=II", PROC_CN_MCAST_LISTEN, _WANTED) if filtered
                   else struct.pack("=I", PROC_CN_MCAST_LISTEN))
        msg = _CN_MSG.pack(CN_IDX_PROC, CN_VAL_PROC, 0, 0, len(payload), 0) + payload
        sock.send(_NLMSG.pack(_NLMSG.size + len(msg), NLMSG_DONE, 0, 0, 0) + msg)
    except BaseException:
        sock.close()
        raise
    return sock


class Connector:
    """A subscribed proc-connector socket."""

    __slots__ = ("filtered", "sock")

    def __init__(self, sock: socket.socket, filtered: bool):
        self.sock = sock
        self.filtered = filtered

    @classmethod
    def probe(cls) -> tuple[Connector | None, str]:
        """Subscribe and prove that events about our own children arrive; else (None, why)."""
        why = ""
        for filtered in (True, False):
            try:
                sock = _subscribe(filtered)
            except OSError as exc:
                return None, f"proc connector unavailable: {exc.strerror or exc}"
            conn = cls(sock, filtered)
            seen = conn._fork_seen()
            if seen == "ok":
                return conn, ""
            conn.close()
            why = seen
        return None, why

    def _fork_seen(self) -> str:
        """Start a thread that ends at once, and look for its fork event: 'ok' or why not.

        A thread costs nothing to reap, and the kernel reports its creation like a
        fork (child pid != child tgid), tagged with roost's PID as the kernel sees it.
        """
        import _thread  # noqa: PLC0415 - lazy (start-up): the probe only

        me = os.getpid()
        _thread.start_new_thread(lambda: None, ())
        foreign = False
        poller = select.poll()
        poller.register(self.sock.fileno(), select.POLLIN)
        for _ in range(2):
            # A new thread is reported with the process's own parent as its parent.
            for thread, _parent_tgid, child_tgid in self._raw_forks():
                if thread and child_tgid == me:
                    return "ok"
                foreign = True
            if foreign or not poller.poll(PROBE_WAIT * 1000):
                break
        if foreign:
            return "proc connector events carry PIDs of another PID namespace"
        return "proc connector delivers no events here"

    def _raw_forks(self) -> list[tuple[bool, int, int]]:
        """Every queued fork event, threads included: (is a thread, parent tgid, child tgid)."""
        found: list[tuple[bool, int, int]] = []
        while True:
            try:
                data = self.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return found
            except OSError:
                continue
            offset = 0
            while offset + _DATA_AT + _PIDS.size <= len(data):
                length = _NLMSG.unpack_from(data, offset)[0]
                if length < _DATA_AT:
                    break
                if _EVENT.unpack_from(data, offset + _EVENT_AT)[0] == PROC_EVENT_FORK:
                    _a, b, c, d = _PIDS.unpack_from(data, offset + _DATA_AT)
                    found.append((c != d, b, d))
                offset += (length + 3) & ~3

    def fileno(self) -> int:
        """The socket's fd, for the reactor."""
        return self.sock.fileno()

    def read(self) -> tuple[list[Event], bool]:
        """Every queued event, oldest first, and whether the kernel dropped some on the way."""
        events: list[Event] = []
        lost = False
        recv = self.sock.recv
        while True:
            try:
                data = recv(65536)
            except BlockingIOError:
                return events, lost
            except InterruptedError:
                continue
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                # The buffer overflowed: what is queued after the loss is still good.
                lost = True
                continue
            events.extend(parse(data))

    def close(self) -> None:
        """Unsubscribe (by closing the socket)."""
        self.sock.close()


class PidMap:
    """pid -> service, following every fork of a member and forgetting every exit."""

    __slots__ = ("_owner", "_pending", "_pids", "me")

    def __init__(self, me: int):
        self.me = me
        self._owner: dict[int, str] = {}
        self._pids: dict[str, set[int]] = {}
        # pid roost spawned -> its service, until the spawn's own fork event is read
        self._pending: dict[int, str] = {}

    def service_of(self, pid: int) -> str | None:
        """The service `pid` belongs to, if it is mapped."""
        return self._owner.get(pid)

    def pids(self, name: str) -> list[int]:
        """The mapped PIDs of `name`, in order."""
        return sorted(self._pids.get(name, ()))

    def count(self, name: str) -> int:
        """How many PIDs of `name` are mapped."""
        return len(self._pids.get(name, ()))

    def expect(self, name: str, pid: int) -> None:
        """A spawn of `name` as `pid`: drop the service's old PIDs, await its fork event."""
        self.drop(name)
        self._pending[pid] = name

    def confirm(self, pid: int, alive: bool) -> None:
        """The queue was read after the spawn: map `pid` now if its fork event was not in it."""
        name = self._pending.pop(pid, None)
        if name is not None and alive:
            self._add(name, pid)

    def apply(self, event: Event) -> str | None:
        """Follow one event; the service a member left, if it was an exit of a member."""
        kind, a, b = event
        if kind == FORK:
            self.fork(a, b)
            return None
        return self.exit(a) if kind == EXIT else None

    def fork(self, parent: int, child: int) -> None:
        """A child of a member is a member; so is a child of roost it is waiting for."""
        name = self._owner.get(parent)
        if name is None and parent == self.me:
            name = self._pending.pop(child, None)
        if name is not None:
            self._add(name, child)

    def exit(self, pid: int) -> str | None:
        """`pid` exited: unmap it; the service it was in, if any."""
        name = self._owner.pop(pid, None)
        if name is not None:
            pids = self._pids.get(name)
            if pids is not None:
                pids.discard(pid)
        return name

    def drop(self, name: str) -> None:
        """Unmap every PID of `name`."""
        for pid in self._pids.pop(name, set()):
            self._owner.pop(pid, None)

    def resync(self, table: dict[int, ProcStat]) -> None:
        """Events were lost: rebuild from a /proc snapshot, seeded with what the map held."""
        floor = Lineage(self.me)
        for name, pids in self._pids.items():
            floor.known[name] = {p: table[p].starttime for p in pids if p in table}
            floor.ids[name] = set()
        owner = floor.scan(table)
        self._owner = {p: n for p, n in owner.items() if table[p].state != "Z"}
        self._pids = {}
        for pid, name in self._owner.items():
            self._pids.setdefault(name, set()).add(pid)

    def _add(self, name: str, pid: int) -> None:
        self._owner[pid] = name
        self._pids.setdefault(name, set()).add(pid)


class ConnectorMeans(Means):
    """Tracking by the kernel's fork and exit events: exact where the PIDs are ours."""

    name = CONNECTOR

    def __init__(self, loop: Loop, conn: Connector, me: int,
                 emptied: Callable[[str], None], left: Callable[[], None]):
        """`emptied(name)`: the last member went; `left()`: a member exited."""
        super().__init__()
        self._loop = loop
        self._conn: Connector | None = conn
        self._emptied = emptied
        self._left = left
        self.map = PidMap(me)
        loop.watch(conn.fileno(), READ, lambda _events: self.sync())

    def sync(self) -> None:
        """Read every queued event into the map."""
        if self._conn is None:
            return
        events, lost = self._conn.read()
        for event in events:
            name = self.map.apply(event)
            if name is not None:
                if not self.map.count(name):
                    self._emptied(name)
                # Its children (if any) are coming home to roost: note them as they arrive.
                self._left()
        if lost:
            console.say("tracking: the kernel dropped process events; rebuilding from /proc")
            self.map.resync(proc.snapshot())
            for name in sorted(self.names):
                if not self.map.count(name):
                    self._emptied(name)

    def started(self, name: str, pid: int, st: ProcStat | None, forking: bool) -> None:
        """Map the new instance by its fork event (or at once, if none was queued)."""
        self.map.expect(name, pid)
        # Events queued before the spawn (an old owner of this PID exiting) must be
        # read first; the spawn's own fork event then maps the child.
        self.sync()
        self.map.confirm(pid, alive=st is not None)

    def pids(self, name: str, table: dict[int, ProcStat] | None = None,
             fresh: bool = True) -> list[int]:
        """The mapped PIDs of `name`, once the queue is read."""
        self.sync()
        return self.map.pids(name)

    def owns(self, name: str, pid: int) -> bool:
        """True if the map gives `pid` to `name`."""
        # Had the member exited before pidfd_open, its exit event would be queued by
        # now: no event means the pidfd names the member.
        return self.map.service_of(pid) == name

    def service_of(self, pid: int, table: dict[int, ProcStat] | None = None) -> str | None:
        """The service the map gives `pid` to, once the queue is read."""
        self.sync()
        return self.map.service_of(pid)

    def forget(self, name: str) -> None:
        """Unmap every PID of `name`."""
        super().forget(name)
        self.map.drop(name)

    def close(self) -> None:
        """Unsubscribe."""
        if self._conn is not None:
            self._loop.unwatch(self._conn.fileno())
            self._conn.close()
            self._conn = None
