"""The client that sends power requests to init (the vocabulary is power.py).

`poweroff`, `reboot` and `halt` (as `roost poweroff` or as the program name, and
`shutdown -h|-r|-H|-P now`) talk to PID 1's control socket, the abstract
`@roost/control`, which exists before any filesystem is mounted. When nothing
listens yet the request stays in this process's memory and the client retries
until a deadline; it returns only once init has acknowledged it.

`--via-signal` sends the signal busybox's tools send, but only after proving
that PID 1 has its handlers installed: a double-forked grandchild dies, becomes
a zombie re-parented to PID 1, and the client polls it with kill(pid, 0) until
PID 1 has reaped it. roost reaps only from its reactor, whose signal handlers
are installed first, so a reaped zombie means a signal sent now is heard.
"""

from __future__ import annotations

import _signal
import errno
import os
import socket
import sys
import time

from roost.control import protocol
from roost.system.power import HALT, KEXEC, POWEROFF, REBOOT, REQUEST_SIGNALS, SYSTEM_CONTROL

DEFAULT_DEADLINE = 90.0  # seconds a client keeps retrying before it gives up

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """A bad command line."""


class Options:
    """A parsed power request command line."""

    __slots__ = ("control", "deadline", "force", "kind", "quiet", "via_signal")

    def __init__(self, kind: str):
        self.kind = kind
        self.control: str | None = None
        self.deadline = DEFAULT_DEADLINE
        self.force = False
        self.via_signal = False
        self.quiet = False


USAGE = """\
usage: {prog} [-f] [--via-signal] [--timeout SECONDS] [--control ADDR]{extra}

Ask roost (PID 1) to {what}: stop every service in reverse dependency order,
end every other process, unmount the filesystems, then {what}. Returns once
init has acknowledged the request, retrying until it can (--timeout, 90 s).

  -f, --force        skip stopping services one by one (every process still gets
                     TERM, then KILL, and every filesystem is still unmounted)
  --via-signal       send busybox's signal instead, once PID 1 is proven ready
  --timeout SECONDS  give up after this long (default 90)
  --control ADDR     control socket (default @roost/control)
  -q, --quiet        print nothing on success
  -d, -n, --no-wall  accepted for compatibility, ignored
"""

SHUTDOWN_USAGE = """\
usage: shutdown [-h|-P|-r|-H] [-f] [--via-signal] [--timeout SECONDS] [TIME] [MESSAGE...]

  -h, -P  power off (the default)     -r  reboot     -H  halt
TIME must be `now` or `+0`: roost does not schedule shutdowns.
"""


def parse(prog: str, args: list[str]) -> Options:
    """Parse `poweroff|reboot|halt [options]` or `shutdown [-h|-r|-H|-P] [now]`."""
    kind = POWEROFF if prog == "shutdown" else prog
    if kind not in (POWEROFF, REBOOT, HALT):
        raise UsageError(f"unknown request {prog!r}")
    opts = Options(kind)
    positional: list[str] = []
    items = list(args)
    while items:
        arg = items.pop(0)
        if arg == "--":
            positional += items
            break
        if arg in ("--help", "-?") or (arg == "-h" and prog != "shutdown"):
            raise UsageError("")
        if arg in ("-f", "--force"):
            opts.force = True
        elif arg == "--via-signal":
            opts.via_signal = True
        elif arg in ("-q", "--quiet"):
            opts.quiet = True
        elif arg in ("-d", "-n", "--no-wall", "--no-wtmp", "--no-sync"):
            pass
        elif arg == "-p" and prog == HALT:
            opts.kind = POWEROFF
        elif arg == "--kexec" and prog == REBOOT:
            opts.kind = KEXEC
        elif prog == "shutdown" and arg in ("-h", "-P", "--poweroff"):
            opts.kind = POWEROFF
        elif prog == "shutdown" and arg in ("-r", "--reboot"):
            opts.kind = REBOOT
        elif prog == "shutdown" and arg in ("-H", "--halt"):
            opts.kind = HALT
        elif prog == "shutdown" and arg == "-c":
            raise UsageError("shutdown -c: roost does not schedule shutdowns, nothing to cancel")
        elif arg in ("--timeout", "--control") or arg.startswith(("--timeout=", "--control=")):
            name, eq, value = arg.partition("=")
            if not eq:
                if not items:
                    raise UsageError(f"{name} needs a value")
                value = items.pop(0)
            if name == "--control":
                opts.control = value
            else:
                try:
                    opts.deadline = float(value)
                except ValueError:
                    raise UsageError(f"--timeout: not a number: {value!r}") from None
                if not opts.deadline > 0:
                    raise UsageError("--timeout must be more than 0")
        elif arg.startswith("-") and arg != "-":
            raise UsageError(f"unknown option {arg}")
        else:
            positional.append(arg)
    if prog == "shutdown":
        if positional and positional[0] not in ("now", "+0", "0"):
            raise UsageError(f"shutdown {positional[0]}: only `now` is supported")
    elif positional:
        raise UsageError(f"unexpected argument {positional[0]!r}")
    return opts


# -- the control-socket client --------------------------------------------------


class Refused(Exception):
    """init answered, and said no; retrying will not help."""


def ask(kind: str, *, address: str = SYSTEM_CONTROL, deadline: float = DEFAULT_DEADLINE,
        force: bool = False, source: str | None = None) -> dict[str, object]:
    """Deliver one request to init and return its acknowledgement; retry until `deadline`.

    Raises TimeoutError when init never answered, Refused when it answered no.
    """
    end = time.monotonic() + deadline
    payload = protocol.request(kind, {"force": force, **({"source": source} if source else {})})
    pause = 0.001
    last = "nothing listens"
    while True:
        left = end - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no acknowledgement from init within {deadline:g}s ({last})")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        sock.settimeout(left)
        try:
            sock.connect(protocol.socket_address(address))
            sock.sendall(payload)
            reply = _read_line(sock)
        except (ConnectionRefusedError, FileNotFoundError) as exc:
            last = f"nothing listens on {address} ({exc.strerror})"
            reply = None
        except (ConnectionResetError, BrokenPipeError, EOFError) as exc:
            # init went away between accept and reply (a re-exec, or a restart): ask again.
            last = f"connection lost ({exc})"
            reply = None
        except TimeoutError:
            raise TimeoutError(f"no acknowledgement from init within {deadline:g}s "
                               f"(connected to {address}, no reply)") from None
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNREFUSED, errno.ENOENT):
                raise
            last = f"{address}: {exc.strerror}"
            reply = None
        finally:
            sock.close()
        if reply is not None:
            if reply.get("ok"):
                result = reply.get("result")
                return result if isinstance(result, dict) else {"result": result}
            err = reply.get("error")
            message = err.get("message") if isinstance(err, dict) else None
            raise Refused(str(message or "init refused the request"))
        time.sleep(min(pause, max(0.0, end - time.monotonic())))
        pause = min(pause * 2, 0.05)


def _read_line(sock: socket.socket) -> dict[str, object]:
    lines = protocol.LineDecoder(protocol.MAX_REPLY)
    while True:
        try:
            line = lines.line()
        except protocol.TooLong as exc:
            raise EOFError(f"reply {exc}") from None
        if line is not None:
            break
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError("init closed the connection without a reply")
        lines.feed(chunk)
    try:
        return protocol.decode_reply(line)
    except protocol.ProtocolError as exc:
        raise EOFError(exc.message) from None


# -- the signal path, behind the zombie probe ---------------------------------


def _pid1_is_roost() -> bool | None:
    """True if PID 1 runs roost, False if it runs something else, None if /proc cannot say."""
    try:
        with open("/proc/1/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return None
    for raw in argv[:4]:
        arg = os.fsdecode(raw)
        if "roost" in arg or (arg.startswith("/") and "roost" in os.path.realpath(arg)):
            return True
    return False


def probe_pid1(deadline: float) -> bool:
    """Prove PID 1 reaps (so its handlers are installed): True once it reaped our zombie.

    A child forks a grandchild that exits at once; the child exits too, so the
    zombie grandchild is re-parented to PID 1 (or to a subreaper between us,
    which would prove nothing: run this from a process with no subreaper above).
    """
    r, w = os.pipe2(os.O_CLOEXEC)
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the forked child
        try:
            os.close(r)
            grandchild = os.fork()
            if grandchild == 0:
                os._exit(0)
            os.write(w, str(grandchild).encode())
        finally:
            os._exit(0)
    os.close(w)
    data = b""
    while True:
        chunk = os.read(r, 64)
        if not chunk:
            break
        data += chunk
    os.close(r)
    os.waitpid(child, 0)
    grandchild = int(data or b"0")
    if grandchild <= 0:
        return False
    end = time.monotonic() + deadline
    pause = 0.001
    while time.monotonic() < end:
        try:
            os.kill(grandchild, 0)
        except ProcessLookupError:
            return True
        time.sleep(pause)
        pause = min(pause * 2, 0.05)
    return False


def send_signal(kind: str, deadline: float) -> None:
    """Signal PID 1 with the request's signal once the zombie probe says it is ready."""
    if _pid1_is_roost() is False:
        raise Refused("PID 1 is not roost; refusing to signal it (use the control socket)")
    if not probe_pid1(deadline):
        raise TimeoutError(f"PID 1 did not reap a zombie within {deadline:g}s: not ready")
    os.kill(1, REQUEST_SIGNALS[kind])


def main(prog: str, args: list[str]) -> int:
    """The `poweroff`, `reboot`, `halt` and `shutdown` commands."""
    from roost import early  # noqa: PLC0415 - lazy (start-up): loaded already when run as roost

    early.restore()  # a client dies of ^C like any program
    try:
        opts = parse(prog, args)
    except UsageError as exc:
        if str(exc):
            print(f"{prog}: {exc}", file=sys.stderr)
        text = SHUTDOWN_USAGE if prog == "shutdown" else USAGE.format(
            prog=prog, what={HALT: "halt"}.get(prog, prog.replace("poweroff", "power off")),
            extra=" [-p]" if prog == HALT else " [--kexec]" if prog == REBOOT else "")
        print(text, file=sys.stderr if str(exc) else sys.stdout, end="")
        return EXIT_USAGE if str(exc) else EXIT_OK
    try:
        if opts.via_signal:
            send_signal(opts.kind, opts.deadline)
            if not opts.quiet:
                name = _signal.strsignal(REQUEST_SIGNALS[opts.kind])
                print(f"{opts.kind}: signalled PID 1 ({name})")
            return EXIT_OK
        result = ask(opts.kind, address=opts.control or SYSTEM_CONTROL, deadline=opts.deadline,
                     force=opts.force)
    except (Refused, OSError) as exc:  # TimeoutError among them
        print(f"{prog}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    if not opts.quiet:
        doing = result.get("carrying_out", opts.kind)
        note = "" if doing == opts.kind else f" (already carrying out {doing})"
        print(f"{opts.kind}: acknowledged by init{note}")
    return EXIT_OK
