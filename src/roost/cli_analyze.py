"""`roost analyze`: a picture of the last start of every service, and its critical chain.

Both are drawn from `status` records alone (each service's `start_age`, `settle_age`
and `after`), so they work against any running roost and any user may ask. Times in
the records are ages, seconds before the reply; here they become offsets from the
first start, which is what a reader of a boot wants to see.
"""

from __future__ import annotations

from xml.sax.saxutils import escape

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

# Fill of a bar by what the start came to; the part before it settled is "starting".
COLOURS = {"starting": "#e0a030", "up": "#4caf50", "done": "#4a90d9", "failed": "#d9453b",
           "backoff": "#d9453b", "down": "#9e9e9e", "stopping": "#9e9e9e"}
ROW = 22  # pixels per service
LABEL = 200  # pixels left of the time axis, for the names
WIDTH = 800  # pixels of the time axis


class Span:
    """One service's last start: from `start` to `settled` (None: not settled yet), in seconds."""

    __slots__ = ("after", "name", "settled", "start", "state")

    def __init__(self, name: str, state: str, start: float, settled: float | None,
                 after: list[str]):
        self.name = name
        self.state = state
        self.start = start
        self.settled = settled
        self.after = after


def spans(records: Sequence[dict[str, Any]]) -> tuple[list[Span], float]:
    """The services that started, in start order, timed from the first start; and the end."""
    started = [r for r in records if r.get("start_age") is not None]
    if not started:
        return [], 0.0
    first = max(r["start_age"] for r in started)
    result = [Span(r["name"], r["state"], first - r["start_age"],
                   None if r.get("settle_age") is None else first - r["settle_age"],
                   list(r.get("after") or []))
              for r in started]
    result.sort(key=lambda s: (s.start, s.name))
    return result, first


def plot(records: Sequence[dict[str, Any]]) -> str:
    """An SVG of the last start: a bar per service from start to settled, and its dependencies."""
    rows, end = spans(records)
    end = max(end, 0.001)
    scale = WIDTH / end
    height = ROW * (len(rows) + 2)
    total = LABEL + WIDTH + 60

    def x(t: float) -> float:
        return round(LABEL + t * scale, 1)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{total}" height="{height}" '
           f'viewBox="0 0 {total} {height}" font-family="sans-serif" font-size="12">',
           f'<rect width="{total}" height="{height}" fill="white"/>']
    for tick in _ticks(end):
        out.append(f'<line x1="{x(tick)}" y1="{ROW // 2}" x2="{x(tick)}" '
                   f'y2="{height - ROW}" stroke="#ddd"/>')
        out.append(f'<text x="{x(tick)}" y="{height - 6}" text-anchor="middle" '
                   f'fill="#666">{tick:g}s</text>')
    row_of = {span.name: index for index, span in enumerate(rows)}
    for index, span in enumerate(rows):
        y = ROW * (index + 1)
        settled = span.settled if span.settled is not None else end
        out.append(f'<text x="{LABEL - 8}" y="{y + 15}" text-anchor="end">'
                   f"{escape(span.name)}</text>")
        out.append(f'<rect class="starting" x="{x(span.start)}" y="{y + 3}" '
                   f'width="{max(1.0, round((settled - span.start) * scale, 1))}" '
                   f'height="{ROW - 6}" fill="{COLOURS["starting"]}">'
                   f"<title>{escape(span.name)}: {span.state}</title></rect>")
        if span.settled is not None:
            fill = COLOURS.get(span.state, "#999")
            out.append(f'<rect class="{escape(span.state)}" x="{x(span.settled)}" '
                       f'y="{y + 3}" width="{max(1.0, round((end - span.settled) * scale, 1))}" '
                       f'height="{ROW - 6}" fill="{fill}" opacity="0.5"/>')
            out.append(f'<text x="{x(settled) + 4}" y="{y + 15}" fill="#333">'
                       f"+{settled - span.start:.3f}s</text>")
        for dep in span.after:
            if dep in row_of:
                before = rows[row_of[dep]]
                ready = before.settled if before.settled is not None else end
                out.append(f'<line class="after" x1="{x(ready)}" '
                           f'y1="{ROW * (row_of[dep] + 1) + ROW // 2}" x2="{x(span.start)}" '
                           f'y2="{y + ROW // 2}" stroke="#555" stroke-dasharray="3,2"/>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _ticks(end: float) -> list[float]:
    """About ten round steps from 0 to `end`."""
    step = 1e-3
    while end / step > 10:
        for factor in (2, 2.5, 2):
            step *= factor
            if end / step <= 10:
                break
    count = int(end / step) + 1
    return [round(i * step, 6) for i in range(count)]


def critical_chain(records: Sequence[dict[str, Any]], name: str | None = None) -> list[str]:
    """What `name` waited for, link by link, as systemd prints it.

    `name` defaults to the last service to settle of those never restarted.

    Each link is the requirement that settled last before the service started: the one
    that held it back. Raises KeyError for a service that did not start.
    """
    rows, _ = spans(records)
    by_name = {span.name: span for span in rows}
    if name is None:
        # A service restarted since would put its latest crash at the end of the boot.
        first = {r["name"] for r in records if not r.get("restarts")}
        settled = [s for s in rows if s.settled is not None and s.name in first]
        if not settled:
            return []
        name = max(settled, key=lambda s: s.settled or 0.0).name
    span: Span | None = by_name[name]
    lines: list[str] = []
    depth = 0
    seen: set[str] = set()
    while span is not None and span.name not in seen:
        seen.add(span.name)
        took = (f" +{span.settled - span.start:.3f}s" if span.settled is not None
                else " (not settled)")
        at = span.settled if span.settled is not None else span.start
        lines.append(f"{'  ' * (depth - 1) + '└─' if depth else ''}{span.name} @{at:.3f}s{took}")
        waited = [by_name[d] for d in span.after if d in by_name
                  and by_name[d].settled is not None
                  and (by_name[d].settled or 0.0) <= span.start + 1e-3]
        span = max(waited, key=lambda s: s.settled or 0.0) if waited else None
        depth += 1
    return lines
