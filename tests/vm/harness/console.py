"""What the guest says: console lines, ``ROOST-VM`` verdicts, how the machine ended."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from pathlib import Path

from .paths import VERDICT_PREFIX


class BootError(AssertionError):
    """qemu missed its deadline or boot limit; carries the :class:`BootResult` and the console."""

    def __init__(self, message: str, result: BootResult) -> None:
        super().__init__(f"{message}\n{result.describe()}")
        self.result = result


@dataclasses.dataclass(frozen=True)
class ConsoleLine:
    """One console line and when it reached the host (seconds since qemu started)."""

    t: float
    text: str


@dataclasses.dataclass(frozen=True)
class Verdict:
    """A ``ROOST-VM <key> <value...>`` line printed by the guest."""

    t: float
    key: str
    value: str


_VERDICT_RE = re.compile(re.escape(VERDICT_PREFIX) + r" (\S+)(?:[ \t]+(.*?))?\s*$")
_SHUTDOWN_LINES = (
    ("reboot: Power down", "poweroff"),
    ("reboot: Restarting system", "reboot"),
    ("reboot: System halted", "halt"),
    ("Kernel panic - not syncing", "panic"),
)


def parse_verdicts(lines: Iterable[ConsoleLine]) -> list[Verdict]:
    """The verdict lines among console lines, in order."""
    verdicts = []
    for line in lines:
        match = _VERDICT_RE.search(line.text)
        if match:
            verdicts.append(Verdict(line.t, match.group(1), match.group(2) or ""))
    return verdicts


@dataclasses.dataclass
class BootResult:
    """What one qemu run produced.  Times are seconds since qemu was started."""

    returncode: int | None
    lines: list[ConsoleLine]
    verdicts: list[Verdict]
    shutdowns: list[str]          # poweroff / reboot / halt / panic, in order
    boots: int                    # stage-0 starts seen
    exited_at: float              # when qemu was gone (or killed)
    deadline_hit: bool
    killed_reason: str | None
    log: Path
    qemu_stderr: str

    @property
    def console(self) -> str:
        """The whole console text."""
        return "\n".join(line.text for line in self.lines)

    @property
    def shutdown(self) -> str | None:
        """How the last boot ended, as the kernel reported it, or None."""
        return self.shutdowns[-1] if self.shutdowns else None

    def values(self, key: str) -> list[str]:
        """Every value printed for ``key``."""
        return [v.value for v in self.verdicts if v.key == key]

    def value(self, key: str, default: str | None = None) -> str | None:
        """The last value printed for ``key``, or ``default``."""
        values = self.values(key)
        return values[-1] if values else default

    def line_time(self, marker: str) -> float:
        """When the first console line containing ``marker`` arrived."""
        for line in self.lines:
            if marker in line.text:
                return line.t
        raise KeyError(f"no console line contains {marker!r}")

    def time_from(self, marker: str) -> float:
        """Seconds from the first line containing ``marker`` to qemu's exit."""
        return self.exited_at - self.line_time(marker)

    def describe(self, tail: int = 60) -> str:
        """A summary for failure messages: status, ending, verdicts, the console's tail."""
        shown = self.lines[-tail:]
        return (
            f"qemu: exit {self.returncode}, ended by {self.shutdown}, boots {self.boots}, "
            f"{self.exited_at:.1f}s, deadline hit: {self.deadline_hit}, "
            f"killed: {self.killed_reason}\n"
            f"verdicts: {[(v.key, v.value) for v in self.verdicts]}\n"
            f"full console: {self.log}\n"
            f"--- console (last {len(shown)} lines) ---\n"
            + "\n".join(f"[{line.t:7.3f}] {line.text}" for line in shown)
            + (f"\n--- qemu stderr ---\n{self.qemu_stderr}" if self.qemu_stderr.strip() else "")
        )
