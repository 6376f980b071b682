"""The command line of `roost run`, parsed by hand, and the signals it may forward.

`argparse` alone costs more than the interpreter's start-up, and this path is
timed on every container start (docs/DESIGN.md, "import cost").
"""

import _signal

from roost.core import sigs

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

# Never forwarded: SIGCHLD is roost's own business; TTIN and TTOU are ignored so
# that roost, once it has handed the terminal to its child, is never stopped; SIGPIPE
# stays blocked, as roost's own writes to a closed stderr raise it.
_NOT_FORWARDED = frozenset({_signal.SIGCHLD, _signal.SIGTTIN, _signal.SIGTTOU, _signal.SIGPIPE})
FORWARDED = sigs.CATCHABLE - _NOT_FORWARDED
HANDLED = FORWARDED | {_signal.SIGCHLD}
IGNORED = (_signal.SIGTTIN, _signal.SIGTTOU)
# The signals that ask a container to stop: after one, the main command is not restarted.
STOP_SIGNALS = frozenset({_signal.SIGTERM, _signal.SIGINT, _signal.SIGQUIT})

USAGE = """\
usage: roost run [options] -- COMMAND [ARG...]

Run COMMAND as the main process of a container: forward signals to it, reap
every orphan, exit with its status (128+N if signal N killed it).

options:
  -v, --verbose          log each forwarded signal and each reaped process
  -g, --group            forward signals to COMMAND's process group
  --signal-map MAP       rewrite forwarded signals: TERM:QUIT,USR1:0 (0 drops)
  --grace SECONDS        wait this long for processes to exit after TERM (5)
  --remap-exit N:M[,..]  exit with M when COMMAND's status is N
  -c, --config DIR       also supervise the services in DIR (sidecars)
  --after SERVICE        start COMMAND once SERVICE is ready (repeatable)
  --control ADDR         control socket for the sidecars (path or @abstract)
  --user USER[:GROUP]    run COMMAND as USER (names or numbers)
  --no-new-privileges    COMMAND and its children can never gain privileges
  --pre-stop-delay SECS  on the first TERM, wait this long before forwarding it
  --restart POLICY       restart COMMAND when it exits: on-failure or always
  --restart-delay SECS   wait before a restart, doubling each time (1)
  --restart-max-delay S  the longest wait before a restart (30)
  --restart-limit N      restart at most N times
  --ready-file PATH      a file that exists while COMMAND runs (after its --after
                         services are up): for a HEALTHCHECK or an exec probe
  --ready-fd N           write a newline to descriptor N once COMMAND started
"""

class UsageError(Exception):
    """A bad command line; the message says what is wrong."""


class RunOptions:
    """The parsed command line of `roost run`."""

    __slots__ = ("after", "command", "config", "control", "grace", "group", "no_new_privs",
                 "pre_stop_delay", "ready_fd", "ready_file", "remap", "restart",
                 "restart_delay", "restart_limit", "restart_max_delay", "signal_map", "user",
                 "verbose")

    def __init__(self) -> None:
        self.verbose = False
        self.group = False
        self.signal_map: dict[int, int] = {}
        self.grace = 5.0
        self.remap: dict[int, int] = {}
        self.config: str | None = None
        self.after: list[str] = []
        self.control: str | None = None
        self.command: list[str] = []
        self.user: str | None = None
        self.no_new_privs = False
        self.pre_stop_delay = 0.0
        self.restart: str | None = None
        self.restart_delay: float | None = None
        self.restart_max_delay: float | None = None
        self.restart_limit: int | None = None
        self.ready_fd: str | None = None
        self.ready_file: str | None = None


# The longest grace accepted (11.6 days): no container stops that slowly, and a
# bound keeps the deadline a real instant.
MAX_GRACE = 1_000_000.0

RESTART_POLICIES = ("on-failure", "always")
DEFAULT_RESTART_DELAY = 1.0
DEFAULT_RESTART_MAX_DELAY = 30.0

# Options that take no value, by their one-letter names (they may be bundled: -vg).
_FLAGS = "vgh"


def _pairs(text: str, parse: "Callable[[str], int]") -> "list[tuple[int, int]]":
    pairs = []
    for item in text.split(","):
        left, sep, right = item.partition(":")
        if not sep:
            raise UsageError(f"expected FROM:TO, got {item!r}")
        pairs.append((parse(left), parse(right)))
    return pairs


def _code(text: str) -> int:
    digits = text.strip()
    # ASCII only: str.isdigit() also accepts characters like "²" that int() refuses.
    if not (digits.isascii() and digits.isdigit()) or int(digits) > 255:
        raise UsageError(f"--remap-exit: not an exit status (0-255): {text!r}")
    return int(text)


def _signal_number(text: str) -> int:
    try:
        return sigs.number(text)
    except ValueError as exc:
        raise UsageError(f"--signal-map: {exc}") from None


def _signal_map(text: str) -> "list[tuple[int, int]]":
    pairs = _pairs(text, _signal_number)
    for source, _ in pairs:
        if source not in FORWARDED:
            what = sigs.name(source) if source else "0"
            raise UsageError(f"--signal-map: {what} is never forwarded, so cannot be mapped")
    return pairs


def _seconds(name: str, text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise UsageError(f"{name}: not a number of seconds: {text!r}") from None
    # Also refuses NaN and infinity: a deadline must be a real instant.
    if not 0 <= seconds <= MAX_GRACE:
        raise UsageError(f"{name}: must be from 0 to {MAX_GRACE:g} seconds, got {text!r}")
    return seconds


def _count(name: str, text: str) -> int:
    digits = text.strip()
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 9:
        raise UsageError(f"{name}: not a count (0-999999999): {text!r}")
    return int(digits)


def _user(text: str) -> str:
    user, _, group = text.partition(":")
    if not user or (":" in text and not group):
        raise UsageError(f"--user: expected USER or USER:GROUP, got {text!r}")
    return text


def _check_restart(opts: "RunOptions") -> None:
    """Refuse restart settings that no policy would use, and a max below the first delay."""
    if opts.restart is None:
        for name, value in (("--restart-delay", opts.restart_delay),
                            ("--restart-max-delay", opts.restart_max_delay),
                            ("--restart-limit", opts.restart_limit)):
            if value is not None:
                raise UsageError(f"{name} needs --restart on-failure|always")
        return
    first = DEFAULT_RESTART_DELAY if opts.restart_delay is None else opts.restart_delay
    longest = max(first, DEFAULT_RESTART_MAX_DELAY) if opts.restart_max_delay is None \
        else opts.restart_max_delay
    if longest < first:
        raise UsageError(f"--restart-max-delay {longest:g} is below --restart-delay {first:g}")
    opts.restart_delay, opts.restart_max_delay = first, longest


def parse(args: "list[str]") -> "RunOptions":
    """Parse `roost run` arguments; raise UsageError with a one-line reason."""
    opts = RunOptions()
    args = list(args)
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            opts.command = args[i:]
            break
        if not arg.startswith("-") or arg == "-":
            opts.command = args[i - 1 :]
            break
        if arg[1] != "-" and len(arg) > 2 and all(c in _FLAGS for c in arg[1:]):
            args[i:i] = [f"-{c}" for c in arg[2:]]
            arg = arg[:2]
        name, eq, inline = arg.partition("=")
        if eq and name in ("-v", "--verbose", "-g", "--group", "-h", "--help",
                           "--no-new-privileges"):
            raise UsageError(f"{name} takes no value")

        def value(name: str = name, eq: str = eq, inline: str = inline) -> str:
            nonlocal i
            if eq:
                return inline
            if i >= len(args):
                raise UsageError(f"{name} needs a value")
            i += 1
            return args[i - 1]

        if name in ("-v", "--verbose"):
            opts.verbose = True
        elif name in ("-g", "--group"):
            opts.group = True
        elif name == "--signal-map":
            opts.signal_map.update(_signal_map(value()))
        elif name == "--grace":
            opts.grace = _seconds(name, value())
        elif name == "--remap-exit":
            opts.remap.update(_pairs(value(), _code))
        elif name in ("-c", "--config"):
            opts.config = value()
        elif name == "--after":
            opts.after.append(value())
        elif name == "--control":
            opts.control = value()
        elif name == "--user":
            opts.user = _user(value())
        elif name == "--no-new-privileges":
            opts.no_new_privs = True
        elif name == "--pre-stop-delay":
            opts.pre_stop_delay = _seconds(name, value())
        elif name == "--restart":
            policy = value()
            if policy not in RESTART_POLICIES:
                raise UsageError(f"--restart: expected on-failure or always, got {policy!r}")
            opts.restart = policy
        elif name in ("--restart-delay", "--restart-max-delay"):
            seconds = _seconds(name, value())
            if name == "--restart-delay":
                opts.restart_delay = seconds
            else:
                opts.restart_max_delay = seconds
        elif name == "--restart-limit":
            opts.restart_limit = _count(name, value())
        elif name == "--ready-fd":
            opts.ready_fd = value()
        elif name == "--ready-file":
            opts.ready_file = value()
        elif name in ("-h", "--help"):
            raise UsageError("")
        else:
            raise UsageError(f"unknown option {arg}")
    if not opts.command:
        raise UsageError("no command given")
    if opts.after and opts.config is None:
        raise UsageError("--after needs -c DIR")
    _check_restart(opts)
    return opts
