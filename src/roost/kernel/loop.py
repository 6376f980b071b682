"""The reactor: file descriptors, timers and signals, on one epoll set.

No periodic tick: an idle roost sleeps in epoll_wait until a descriptor, a timer
or a signal needs it. Signals arrive through CPython's wakeup fd: the C-level
handler writes the signal number into a pipe, so a signal that interrupts the
poll is seen at once rather than at the next bytecode boundary of a handler.
Every callback runs behind a barrier; nothing a handler raises leaves the loop.
"""

import _signal
import gc
import posix
import select
import time

from roost.kernel import console

TYPE_CHECKING = False  # `typing` costs milliseconds at start-up; mypy reads this flag

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

READ = select.EPOLLIN | select.EPOLLRDHUP
WRITE = select.EPOLLOUT

# The longest single wait: epoll takes milliseconds in a C int (about 24.8 days).
# A timer further away is simply waited for in several steps.
MAX_WAIT = 86400.0

# The smallest capacity a pipe can have (one page). A drain that reads this much may
# have followed a full wakeup pipe, which drops the bytes of further signals.
_PIPE_MIN = 4096


def _noop_handler(signum: int, frame: object) -> None:
    """Exist so CPython installs its C handler, which feeds the wakeup fd."""


class Timer:
    """A callback due at a monotonic time; cancel() makes it never run."""

    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: "Callable[[], None]"):
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        """Stop the timer from firing; safe to call more than once."""
        self.cancelled = True


class Loop:
    """A single-threaded epoll reactor with timers and a signal wakeup pipe."""

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._handlers: dict[int, Callable[[int], None]] = {}
        self._timers: list[tuple[float, int, Timer]] = []
        self._seq = 0
        self._running = False
        self._signal_cb: Callable[[int], None] | None = None
        self._handled: set[int] = set()
        self._wake_r = -1
        # Fds unwatched while a batch of events is dispatched: a later event of the
        # batch for the same number belongs to the closed fd, not to a new one that
        # took its number (docs/DESIGN.md, "Descriptor reuse").
        self._stale: set[int] = set()
        self.polls = 0

    # -- descriptors -------------------------------------------------------

    def watch(self, fd: int, events: int, callback: "Callable[[int], None]") -> None:
        """Call `callback(events)` whenever `fd` is ready for `events`."""
        if fd in self._handlers:
            self._epoll.modify(fd, events)
        else:
            self._epoll.register(fd, events)
        self._handlers[fd] = callback

    def modify(self, fd: int, events: int) -> None:
        """Change the events watched on an already watched fd."""
        self._epoll.modify(fd, events)

    def unwatch(self, fd: int) -> None:
        """Stop watching `fd`; call it before closing `fd`, never after.

        epoll watches the open file, not the number: closed while a forked child
        holds a copy, the entry would live on and report under a reused number
        (docs/DESIGN.md, "Descriptor reuse").
        """
        if self._handlers.pop(fd, None) is not None:
            self._stale.add(fd)
            try:
                self._epoll.unregister(fd)
            except (OSError, ValueError):
                pass

    # -- timers ------------------------------------------------------------

    @staticmethod
    def now() -> float:
        """The loop's clock: monotonic seconds."""
        return time.monotonic()

    def call_at(self, when: float, callback: "Callable[[], None]") -> "Timer":
        """Run `callback` once the monotonic clock reaches `when`."""
        # The C module, not heapq.py (which adds only import time), and only once a timer
        # is armed: `roost run` of a command that exits at once never needs it.
        from _heapq import heappush  # noqa: PLC0415 - lazy (start-up): see the comment above

        timer = Timer(when, callback)
        self._seq += 1
        heappush(self._timers, (when, self._seq, timer))
        return timer

    def call_later(self, delay: float, callback: "Callable[[], None]") -> "Timer":
        """Run `callback` after `delay` seconds."""
        return self.call_at(time.monotonic() + max(0.0, delay), callback)

    # -- signals -----------------------------------------------------------

    def handle_signals(self, signums: "Iterable[int]", callback: "Callable[[int], None]",
                       ignore: "Iterable[int]" = ()) -> None:
        """Route `signums` to `callback(signum)` through the loop, ignore `ignore`, unblock both.

        Signals blocked since start-up and pending now are delivered once unblocked,
        so none sent before this call is lost.
        """
        wanted = set(signums)
        ignored = set(ignore) - wanted
        if self._wake_r < 0:
            r, w = posix.pipe2(posix.O_NONBLOCK | posix.O_CLOEXEC)
            self._wake_r = r
            _signal.set_wakeup_fd(w, warn_on_full_buffer=False)
            self.watch(r, READ, self._drain_signals)
        self._signal_cb = callback
        self._handled = wanted
        for signum in wanted:
            _signal.signal(signum, _noop_handler)
        for signum in ignored:
            _signal.signal(signum, _signal.SIG_IGN)
        _signal.pthread_sigmask(_signal.SIG_UNBLOCK, wanted | ignored)

    def _drain_signals(self, _events: int) -> None:
        chunks = []
        while True:
            try:
                data = posix.read(self._wake_r, 4096)
            except BlockingIOError:
                break
            if not data:
                break
            chunks.append(data)
        data = b"".join(chunks)
        # A dropped byte only coalesces an ordinary signal, but a lost SIGCHLD would
        # leave an exit unseen for good (a storm of real-time signals fills the pipe):
        # after a drain that may have followed a full pipe, reap as if one had come.
        if len(data) >= _PIPE_MIN and _signal.SIGCHLD in self._handled:
            data += bytes([_signal.SIGCHLD])
        seen_chld = False
        for signum in data:
            # The reaper drains every child on one SIGCHLD: one call per batch suffices.
            if signum == _signal.SIGCHLD:
                if seen_chld:
                    continue
                seen_chld = True
            if self._signal_cb is not None:
                self._guard(self._signal_cb, signum)

    # -- running -----------------------------------------------------------

    def stop(self) -> None:
        """Make run() return after the current iteration."""
        self._running = False

    def run(self) -> None:
        """Dispatch events until stop() is called."""
        if not gc.isenabled():
            # Start-up is over (roost.early turned the collector off for it). What it made,
            # modules, classes, the configuration, lives as long as roost: freeze it, so no
            # later collection scans it again, then let the collector run.
            gc.freeze()
            gc.enable()
        self._running = True
        while self._running:
            self.run_once()

    def run_once(self, max_wait: "float | None" = None) -> None:
        """Wait for the next event (at most `max_wait` seconds) and dispatch what is ready."""
        timeout = self._timeout() if self._timers else -1.0
        if max_wait is not None:
            timeout = max_wait if timeout < 0 else min(timeout, max_wait)
        events = self._epoll.poll(timeout)
        self.polls += 1
        self._stale.clear()
        for fd, mask in events:
            if fd in self._stale:
                continue
            handler = self._handlers.get(fd)
            if handler is not None:
                self._guard(handler, mask)
        if self._timers:
            self._fire_timers()

    def _timeout(self) -> float:
        from _heapq import heappop  # noqa: PLC0415 - lazy (start-up): loaded by call_at

        timers = self._timers
        # A cancelled timer must not wake an idle roost: drop it before it can.
        while timers and timers[0][2].cancelled:
            heappop(timers)
        if not timers:
            return -1.0
        return min(max(0.0, timers[0][0] - time.monotonic()), MAX_WAIT)

    def _fire_timers(self) -> None:
        from _heapq import heappop  # noqa: PLC0415 - lazy (start-up): loaded by call_at

        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            _, _, timer = heappop(self._timers)
            if not timer.cancelled:
                timer.cancelled = True
                self._guard(timer.callback)

    @staticmethod
    def _guard(callback: "Callable[..., None]", *args: int) -> None:
        try:
            callback(*args)
        except BaseException:  # noqa: BLE001 - PID 1 must outlive any handler's failure
            console.error_trace(getattr(callback, "__qualname__", repr(callback)))
