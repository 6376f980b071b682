"""The control protocol: newline-delimited JSON over a unix stream socket.

A request is one line: {"v": 1, "id": ANY, "cmd": NAME, "args": {...}}.
A reply is one line: {"v": 1, "id": ANY, "ok": true, "result": ...} or
{"v": 1, "id": ANY, "ok": false, "error": {"code": CODE, "message": TEXT}}.
A streaming command (`log` with follow) sends {"v": 1, "id": ANY, "event": ...}
lines after its reply until the client disconnects. See docs/control.md.
"""

from __future__ import annotations

import json
import math
import os
import stat

VERSION = 1
MAX_MESSAGE = 64 * 1024  # bytes in one request line, newline included
# Bytes in one reply line a client accepts: a status of thousands of services fits;
# whatever answers on a socket cannot make a client buffer without end.
MAX_REPLY = 64 * 1024 * 1024
IDLE_TIMEOUT = 30.0  # seconds a connection may stay without a complete request

# Commands anyone may run (`events` streams what `status` shows). Every other command
# needs root or the configured control group: those that change state, and those that
# return what a service printed or
# was started with (`log`: output that carries secrets; `tree`: command lines that
# do, and that /proc may hide from other users with hidepid=).
OPEN_TO_ALL = frozenset({"ping", "status", "events"})

# Error codes.
BAD_REQUEST = "bad-request"
UNSUPPORTED_VERSION = "unsupported-version"
UNKNOWN_COMMAND = "unknown-command"
NOT_PERMITTED = "not-permitted"
NO_SUCH_SERVICE = "no-such-service"
TOO_LARGE = "too-large"
INVALID_CONFIG = "invalid-config"
FAILED = "failed"
TIMEOUT = "timeout"


class ProtocolError(Exception):
    """A request that cannot be served: `code` and a human `message`."""

    def __init__(self, code: str, message: str, ident: object = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.ident = ident  # the request's id, when it could be read


class TooLong(Exception):
    """A line longer than the decoder's limit; `complete` if its newline arrived."""

    def __init__(self, limit: int, complete: bool):
        super().__init__(f"longer than {limit} bytes")
        self.complete = complete


class LineDecoder:
    """Cuts a byte stream into lines of at most `limit` bytes (newline included); no I/O.

    feed() what was read, then take lines until None. A line over the limit
    raises TooLong: a complete one is dropped and the next line follows; an
    incomplete one means the stream can no longer be trusted.
    """

    __slots__ = ("_buffer", "limit")

    def __init__(self, limit: int = MAX_MESSAGE):
        self.limit = limit
        self._buffer = b""

    def feed(self, data: bytes) -> None:
        """Append bytes read from the stream."""
        self._buffer += data

    def line(self) -> bytes | None:
        """The next complete line without its newline, or None until more is fed."""
        line, newline, rest = self._buffer.partition(b"\n")
        if not newline:
            if len(self._buffer) > self.limit:
                raise TooLong(self.limit, complete=False)
            return None
        self._buffer = rest
        if len(line) + 1 > self.limit:
            raise TooLong(self.limit, complete=True)
        return line

    @property
    def pending(self) -> bool:
        """True if part of a line is waiting for its end."""
        return bool(self._buffer)


def encode(message: dict[str, object]) -> bytes:
    """One message as a line of compact JSON."""
    try:
        return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
    except UnicodeEncodeError:
        # A lone surrogate has no UTF-8 form; JSON's \\u escapes carry it as it is.
        return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def request(cmd: str, args: dict[str, object] | None = None, ident: object = 1) -> bytes:
    """Encode a request line."""
    return encode({"v": VERSION, "id": ident, "cmd": cmd, "args": args or {}})


def decode_request(line: bytes) -> tuple[object, str, dict[str, object]]:
    """Parse a request line into (id, cmd, args); raise ProtocolError when malformed."""
    try:
        message = json.loads(line)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(BAD_REQUEST, f"not JSON: {exc}") from None
    except RecursionError:
        # Deep nesting exhausts the parser's stack: a malformed request, not a failure.
        raise ProtocolError(BAD_REQUEST, "not JSON: nested too deeply") from None
    if not isinstance(message, dict):
        raise ProtocolError(BAD_REQUEST, "a request must be a JSON object")
    ident = message.get("id")
    if not _valid_id(ident):
        raise ProtocolError(BAD_REQUEST, "\"id\" must be a string, a finite number or null")
    try:
        # What cannot be encoded back (a lone surrogate, nesting past the encoder's
        # depth) could not be named in a reply either.
        json.dumps(message, ensure_ascii=False).encode()
    except (UnicodeEncodeError, RecursionError, ValueError):
        raise ProtocolError(BAD_REQUEST, "a string holds a lone surrogate, or the request "
                            "nests too deeply", ident) from None
    version = message.get("v")
    if version != VERSION:
        raise ProtocolError(UNSUPPORTED_VERSION,
                            f"protocol version {version!r} not supported (this roost speaks "
                            f"{VERSION})", ident)
    cmd = message.get("cmd")
    if not isinstance(cmd, str):
        raise ProtocolError(BAD_REQUEST, "missing \"cmd\" (a string)", ident)
    args = message.get("args", {})
    if not isinstance(args, dict):
        raise ProtocolError(BAD_REQUEST, "\"args\" must be an object", ident)
    return ident, cmd, args


def decode_reply(line: bytes) -> dict[str, object]:
    """Parse a reply or event line; raise ProtocolError when it is not a JSON object."""
    try:
        message = json.loads(line)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ProtocolError(BAD_REQUEST, "malformed reply") from None
    if not isinstance(message, dict):
        raise ProtocolError(BAD_REQUEST, "malformed reply")
    return message


def _valid_id(ident: object) -> bool:
    if isinstance(ident, str):
        try:
            ident.encode()
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(ident, float):
        return math.isfinite(ident)
    return ident is None or (isinstance(ident, int) and not isinstance(ident, bool))


def ok(ident: object, result: object) -> bytes:
    """Encode a success reply; one over MAX_REPLY becomes a `too-large` error reply."""
    line = encode({"v": VERSION, "id": ident, "ok": True, "result": result})
    if len(line) > MAX_REPLY:
        return error(ident, TOO_LARGE, f"the reply would be {len(line)} bytes, over the "
                     f"{MAX_REPLY >> 20} MiB a client accepts; ask for fewer services")
    return line


def error(ident: object, code: str, message: str) -> bytes:
    """Encode an error reply."""
    return encode({"v": VERSION, "id": ident, "ok": False,
                   "error": {"code": code, "message": message}})


def event(ident: object, payload: dict[str, object]) -> bytes:
    """Encode a streamed event."""
    return encode({"v": VERSION, "id": ident, "event": payload})


def socket_address(address: str) -> str:
    """Turn `@name` into an abstract socket address (a leading NUL); paths stay as they are."""
    return "\0" + address[1:] if address.startswith("@") else address


SYSTEM_ADDRESS = "/run/roost/control"  # the system roost's, and root's default


def default_address() -> str:
    """$ROOST_CONTROL, else /run/roost/control for root, else a per-user path."""
    env = os.environ.get("ROOST_CONTROL")
    if env:
        return env
    if os.geteuid() == 0:
        return SYSTEM_ADDRESS
    return os.path.join(user_directory(), "control")


def client_addresses() -> list[str]:
    """Where a client looks, in order, when not told: its default, then the system roost's.

    A non-root user's own roost comes first; without one, the user most likely
    means the system's (read-only for most: see docs/control.md, Authorization).
    """
    first = default_address()
    return [first] if first == SYSTEM_ADDRESS or os.environ.get("ROOST_CONTROL") else [
        first, SYSTEM_ADDRESS]


def describe_reload(summary: dict[str, list[str]]) -> str:
    """A reload's result in words: `added: api; changed: web`, or `nothing changed`."""
    parts = [f"{key}: {', '.join(names)}" for key, names in summary.items() if names]
    return "; ".join(parts) or "nothing changed"


def user_directory() -> str:
    """The directory of a non-root user's default socket: private to that user."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return os.path.join(runtime, "roost")
    return f"/tmp/roost-{os.geteuid()}"


class UnsafeAddress(OSError):
    """A socket path in a place another user could control (an OSError: a place unusable)."""


def check_directory(directory: str, private: bool) -> None:
    """Refuse a socket directory another user controls; raise UnsafeAddress saying why.

    It must be a real directory (a symbolic link is never followed), owned by this
    uid (or, unless `private`, by root), and writable by no one else (unless sticky,
    as /tmp is); a `private` one must be closed to everyone else (mode 0700).
    """
    uid = os.geteuid()
    try:
        st = os.lstat(directory)
    except OSError as exc:
        raise UnsafeAddress(f"cannot use {directory}: {exc.strerror}") from None
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISLNK(st.st_mode):
        raise UnsafeAddress(f"{directory} is a symbolic link")
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeAddress(f"{directory} is not a directory")
    if st.st_uid != uid and (private or st.st_uid != 0):
        raise UnsafeAddress(f"{directory} is owned by uid {st.st_uid}, not by uid {uid}"
                            + ("" if private else " or root"))
    if private and mode & 0o077:
        raise UnsafeAddress(f"{directory} has mode {mode:04o}, open to other users "
                            "(it must be 0700)")
    if mode & 0o022 and not mode & stat.S_ISVTX:
        raise UnsafeAddress(f"{directory} has mode {mode:04o}: other users could replace "
                            "the socket")
