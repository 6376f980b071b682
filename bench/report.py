"""Write bench/RESULTS.md from a run's results."""

from __future__ import annotations

import math
import statistics
from typing import Any

from bench.core import fmt


def _stats_table(t: dict[str, Any]) -> list[str]:
    scale, digits, roost = t["scale"], t["digits"], t["roost"]
    rows = [r for r in t["rows"] if r["samples"]]
    med = {r["subject"]: statistics.median(r["samples"]) for r in rows}
    out = [f"**{t['title']}** ({t['unit']})", ""]
    has_notes = any(r["note"] for r in rows)
    head = ["subject", "median", "min", "max", "n", f"{roost} / this"]
    if has_notes:
        head.append("note")
    out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        xs = r["samples"]
        ratio = "-"
        if r["subject"] != roost and roost in med and med[r["subject"]] != 0:
            ratio = fmt(med[roost] / med[r["subject"]]) + "x"
        subject = f"**{r['subject']}**" if r["subject"] == roost else r["subject"]
        cells = [subject, fmt(statistics.median(xs) * scale, digits),
                 fmt(min(xs) * scale, digits), fmt(max(xs) * scale, digits), str(len(xs)), ratio]
        if has_notes:
            cells.append(r["note"])
        out.append("| " + " | ".join(cells) + " |")
    missing = [r["subject"] + (f" ({r['note']})" if r["note"] else "")
               for r in t["rows"] if not r["samples"]]
    if missing:
        out += ["", f"No samples: {', '.join(missing)}."]
    if t.get("note"):
        out += ["", t["note"]]
    return [*out, ""]


def _grid(t: dict[str, Any]) -> list[str]:
    out = [f"**{t['title']}**", "", "| " + " | ".join(t["headers"]) + " |",
           "|" + "---|" * len(t["headers"])]
    out += ["| " + " | ".join(row) + " |" for row in t["cells"]]
    if t.get("note"):
        out += ["", t["note"]]
    return [*out, ""]


def render(run: dict[str, Any]) -> str:
    """The whole report as Markdown."""
    m = run["machine"]
    lines = [
        "# roost against its peers: benchmark results",
        "",
        f"Written by `{run['command']}` on {m['date']}; this run took "
        f"{fmt(run['wall_s'] / 60, 1)} min. Raw data: bench/out/results.json (not committed).",
        "",
    ]
    if not run["roost_ok"]:
        lines += [f"**roost was not measured in this run:** {run['roost_reason']}. "
                  "Every roost figure and target below is missing for that reason.", ""]
    lines += ["## Summary", ""]
    heads = [h for s in run["scenarios"] for h in s.get("headlines", [])]
    lines += [f"- {h}" for h in heads] or ["- (no roost figures in this run)"]
    lines += ["", "### Targets", "", "| target | status | figure |", "|---|---|---|"]
    for s in run["scenarios"]:
        for t in s.get("targets", []):
            status = {True: "met", False: "**missed**", None: "not measured"}[t["met"]]
            lines.append(f"| {t['goal']} | {status} | {t['figure']} |")
    whys = [t for s in run["scenarios"] for t in s.get("targets", [])
            if t["met"] is False and t.get("why")]
    if whys:
        lines += ["", "Why the misses:", ""]
        lines += [f"- {t['goal']}: {t['why']}" for t in whys]
    lines += ["", "## Machine", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in m.items()]
    lines += ["", "## Programs", "", "| program | version |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in run["versions"].items()]
    if run["missing"]:
        lines += ["", "Not found: " + "; ".join(f"{k}: {v}" for k, v in run["missing"].items())]
    lines += [
        "",
        "## Method",
        "",
        "Subjects of a scenario run interleaved (A B C A B C ...) after a warm-up round "
        "where the scenario says so. Ratios are roost's median over the peer's median: "
        "below 1 roost is faster or smaller. Every process a scenario starts is killed and "
        "reaped at its end (process groups, and PID namespaces the bench owns); work "
        "directories live under bench/out and are removed. C helpers (bench/native) are "
        "static binaries so that their own exec costs little.",
        "",
    ]
    for s in run["scenarios"]:
        lines += [f"## {s['title']} (`{s['name']}`)", ""]
        if s.get("planned"):
            lines += [s["describes"].strip(), "", f"Not measured yet: {s['planned']}.", ""]
            continue
        lines += [s["describes"].strip(), ""]
        if s.get("skipped"):
            lines += [f"**Not run:** {s['skipped']}", ""]
            continue
        load = s.get("load", {})
        lines += [f"Scenario wall time: {fmt(s['wall_s'], 1)} s; 1-minute load average "
                  f"{fmt(load.get('start'))} at its start, {fmt(load.get('end'))} at its end "
                  f"(2 cores; other work on the machine and the scenario's own process storms "
                  "raise it).", ""]
        for t in s["tables"]:
            lines += _stats_table(t) if t["kind"] == "stats" else _grid(t)
        for p in s.get("plots", []):
            lines += [f"![{p}](plots/{p})", ""]
        if s.get("notes"):
            lines += ["Notes:", ""] + [f"- {n}" for n in s["notes"]] + [""]
    return "\n".join(lines).rstrip() + "\n"


def nan_to_none(obj: Any) -> Any:
    """JSON has no NaN: replace it with null, recursively."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [nan_to_none(v) for v in obj]
    return obj
