"""The kernel's process events (proc connector): every fork and exit, in the order they happen.

A netlink socket (NETLINK_CONNECTOR, group CN_IDX_PROC) receives one datagram per
event, queued synchronously by the kernel while the fork or the exit happens. So
the membership map built from fork events is exact: a child's fork event is queued
before anything the child can do, and a member's exit event is queued before its
PID can be freed and handed to someone else.

The connector is usable only where its PIDs are ours: inside a PID namespace the
kernel either sends nothing or sends the initial namespace's PIDs. `probe` finds
out by starting a thread and looking for that very creation in the stream.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import struct

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
        import _thread  # noqa: PLC0415 - only for the probe

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
