"""What the command line prints: the status table and detail, a transaction's outcome, trees.

Pure formatting of what the control socket returned; no I/O but the caller's print.
Every text a service chose (its notify STATUS, its command line, its output) is made
printable first: a service must not be able to drive the operator's terminal.
"""

from __future__ import annotations

from roost.config.errors import one_line
from roost.core import ready

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    Record = dict[str, Any]

# systemctl is-active's convention: 0 when everything asked about is active, 3 otherwise.
ALL_UP = 0
NOT_ALL_UP = 3

READY = ready.READY_STATES
COLOURS = {"up": "32", "done": "32", "starting": "33", "stopping": "33", "backoff": "33",
           "failed": "31;1", "down": "2"}
HEADER = ("NAME", "STATE", "PID", "UPTIME", "RESTARTS", "STATUS", "REASON")

# What each verb must leave every touched service in, and how to say it happened.
GOALS = {"start": ("up", "done"), "restart": ("up", "done"), "stop": ("down", "failed", "done")}
PAST = {"start": "started", "stop": "stopped", "restart": "restarted"}


def wants_colour(isatty: bool, environ: dict[str, str]) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set to anything (no-color.org)."""
    return isatty and not environ.get("NO_COLOR")


def printable(text: object) -> str:
    """`text` with every control character escaped, as Python writes it: safe for a terminal."""
    return one_line("" if text is None else str(text))


def duration(seconds: float | None) -> str:
    """A short duration: `4.2s`, `35s`, `3m12s`, `2h5m`, `3d4h`; `-` for none."""
    if seconds is None:
        return "-"
    total = int(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes}m"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{seconds:.1f}s" if seconds < 10 else f"{secs}s"


def _paint(text: str, state: str, colour: bool) -> str:
    return f"\033[{COLOURS.get(state, '0')}m{text}\033[0m" if colour else text


def _reason(record: Record) -> str:
    """Why the service is where it is; first, the command around its main one that runs."""
    reason = printable(record.get("reason"))
    step = record.get("step")
    if step:
        return f"running {step}" + (f"; {reason}" if reason else "")
    return reason or "-"


def table(records: list[Record], colour: bool = False) -> list[str]:
    """The status table: one row per record, columns aligned, the last left ragged.

    A HEALTH column after STATE only when some service has a health check.
    """
    health = any(r.get("health") for r in records)
    rows: list[tuple[str, ...]] = [(*HEADER[:2], "HEALTH", *HEADER[2:]) if health else HEADER]
    for r in records:
        fields = (printable(r["name"]), r["state"], str(r.get("pid") or "-"),
                  duration(r.get("uptime")), str(r.get("restarts", 0)),
                  printable(r.get("status")) or "-", _reason(r))
        rows.append((*fields[:2], r.get("health") or "-", *fields[2:]) if health else fields)
    last = len(rows[0]) - 1
    widths = [max(len(row[i]) for row in rows) for i in range(last)]
    lines = []
    for index, row in enumerate(rows):
        cells = [row[i].ljust(widths[i]) for i in range(last)]
        if index:
            cells[1] = _paint(cells[1], row[1], colour)
        lines.append("  ".join([*cells, row[last]]).rstrip())
    lines += [f"{printable(r['name'])}: {r['log_dropped']} lines never reached its log file"
              for r in records if r.get("log_dropped")]
    return lines


def status_exit(records: list[Record], named: bool) -> int:
    """0 when every named service (else every wanted one) is up or done, else 3.

    An unhealthy service is not up, whatever its state.

    A service the configuration could not set up (no `want` at all) counts as not up.
    """
    considered = records if named else ready.wanted(records)
    return ALL_UP if all(ready.why_not(r) is None for r in considered) else NOT_ALL_UP


def not_ready_line(records: list[Record]) -> str:
    """`roost status --check`'s one line: what is not ready, or "" when everything wanted is."""
    missing = ready.not_ready(records)
    if not missing:
        return ""
    shown = ", ".join(f"{printable(name)} {why}" for name, why in missing[:10])
    more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
    return f"not ready: {shown}{more} ({ready.summary(records)})"


def detail(record: Record, tree: Record | None, log: list[Record] | None,
           colour: bool = False) -> list[str]:
    """One service in the spirit of `systemctl status`: what it runs, since when, its processes.

    `tree` (its entry of the `tree` reply) and `log` (its last lines) are None when
    the caller may not read them: they are for root and the control group only.
    """
    state = record["state"]
    head = f"{printable(record['name'])} - {_paint(state, state, colour)}"
    if record.get("pid"):
        head += f" (pid {record['pid']})"
    lines = [head]

    def field(key: str, value: object) -> None:
        if value not in (None, ""):
            lines.append(f"{key:>10}: {printable(value)}")

    field("type", record.get("type"))
    if tree is not None:
        field("command", " ".join(_quoted(a) for a in tree.get("argv") or []))
        where = f" ({tree['cgroup']})" if tree.get("cgroup") else ""
        field("tracking", f"{tree.get('tracking')}{where}")
    else:
        field("tracking", record.get("tracking"))
    since = record.get("since")
    if since is not None:
        field("since", f"{duration(since)} ago" + (f", up {duration(record['uptime'])}"
                                                  if record.get("uptime") else ""))
    field("status", record.get("status"))
    field("reason", record.get("reason"))
    field("running", record.get("step"))
    field("last exit", record.get("last_exit"))
    field("restarts", record.get("restarts"))
    if record.get("health"):
        failed = record.get("health_failures") or 0
        field("health", record["health"] + (f" ({failed} failed in a row)" if failed else ""))
    if record.get("health_checks"):
        field("last probe", record.get("health_last") or "-")
    if tree is not None and tree.get("processes"):
        lines.append(f"{'processes':>10}:")
        lines += ["  " + line for line in _processes(tree["processes"])]
    if log:
        from roost.kernel import console  # noqa: PLC0415 - lazy (start-up): a detail only

        lines.append(f"{'log':>10}:")
        marks = {"err": "! ", "roost": ""}
        lines += [f"  {console.stamp(r['time'])} {marks.get(r.get('stream', ''), '')}"
                  f"{printable(r['line'])}" for r in log]
    if tree is None or log is None:
        lines.append("  (its command, processes and log: for root and the control group)")
    return lines


def _quoted(arg: str) -> str:
    return arg if arg and all(c.isalnum() or c in "-_./=:,+@%" for c in arg) else repr(arg)


def _processes(processes: list[Record]) -> list[str]:
    return [f"{p['pid']:>7}{'*' if p.get('main') else ' '} {'  ' * p.get('depth', 0)}"
            f"{printable(p['command'])}" for p in processes]


def tree_lines(result: Record) -> list[str]:
    """The `tree` reply: each service with its processes (`*` the main one), then orphans."""
    lines = []
    for entry in result["services"]:
        where = f" {entry['cgroup']}" if entry.get("cgroup") else ""
        lines.append(f"{entry['service']} ({entry['tracking']}{where})")
        lines += ["  " + line for line in _processes(entry["processes"])]
    orphans = result.get("orphans") or []
    if orphans:
        lines.append("orphans")
        lines += [f"  {o['pid']:>7}  {o.get('service') or 'unknown'}  {printable(o['command'])}"
                  for o in orphans]
    return lines


def transaction(verb: str, names: list[str], records: list[Record]) -> tuple[str, bool]:
    """The one-line outcome of a start, stop or restart, and whether it did what was asked.

    `records` are those of every service it touched, the named first (control/commands.py).
    """
    goal = GOALS[verb]
    named = ", ".join(names)
    bad = [r for r in records if r["state"] not in goal]
    if bad:
        what = ", ".join(f"{printable(r['name'])} {r['state']}"
                         + (f" ({printable(r['reason'])})" if r.get("reason") else "")
                         for r in bad)
        return f"{verb} {named}: not done: {what}", False
    others = len({r["name"] for r in records} - set(names))
    along = ""
    if others:
        noun = "service" if others == 1 else "services"
        one = len(names) == 1
        if verb == "start":
            along = f" and {others} {noun} {'it requires' if one else 'they require'}"
        else:
            along = (f" and {others} {noun} that require{'s' if others == 1 else ''} "
                     f"{'it' if one else 'them'}")
    if verb == "stop":
        state = "down"
    else:
        state = "up" if all(r["state"] == "up" for r in records) else "up or done"
    return f"{PAST[verb]} {named}{along}: {'all ' if len(records) > 1 else ''}{state}", True
