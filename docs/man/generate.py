"""Write roost's manual pages from the sources they document, so they never drift from them.

    python docs/man/generate.py        # rewrites roost.8, roost-run.1 and roost.toml.5 here

roost(8) is the command line's own grammar (roost.cli_parser: each command's usage,
description, options with their help and defaults, example), roost-run(1) is `roost
run`'s usage text, and roost.toml(5) is docs/config.md. tests/unit/test_man_pages.py
generates them again and fails when a committed page differs, and renders each with
man(1) to catch what roff would not read.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
DATE = "2026-12-03"  # the pages' date: changed by hand with what they describe


def _escape(text: str) -> str:
    """Text as roff reads it: backslashes doubled, no line starting with a control character."""
    text = text.replace("\\", "\\e")
    # roff reads bytes: anything beyond ASCII by its Unicode name (a minus sign, an arrow).
    text = "".join(c if ord(c) < 128 else f"\\[u{ord(c):04X}]" for c in text)
    return "\n".join(("\\&" + line) if line.startswith((".", "'")) else line
                     for line in text.split("\n"))


def _inline(text: str) -> str:
    """Markdown's inline marks, in roff: `code` and **strong** bold, links as their text."""
    text = _escape(text)
    text = re.sub(r"\[([^\]]+)\]\([^)]+\)", r"\1", text)
    text = re.sub(r"\*\*([^*]+)\*\*", r"\\fB\1\\fR", text)
    return re.sub(r"`([^`]+)`", r"\\fB\1\\fR", text)


def _header(name: str, section: str, title: str) -> list[str]:
    from roost import __version__  # noqa: PLC0415 - after main() put src on sys.path

    return [f'.TH {name.upper()} {section} "{DATE}" "roost {__version__}" "{title}"']


def roost_8() -> str:
    """roost(8), from the command-line parser."""
    import os  # noqa: PLC0415 - for this page only

    from roost.cli_parser import HELP, parser  # noqa: PLC0415 - after main() put src on sys.path

    # argparse wraps the usage lines to the terminal's width: the same width every time.
    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "80"
    try:
        return _roost_8(parser(), HELP)
    finally:
        if columns is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = columns


def _roost_8(grammar: argparse.ArgumentParser, helps: dict[str, tuple[str, str, str]]) -> str:
    """roost(8)'s text."""
    out = _header("roost", "8", "System Manager's Manual")
    out += [".SH NAME", "roost \\- a Linux init and service supervisor",
            ".SH SYNOPSIS", ".B roost", "\\fICOMMAND\\fR [\\fIoptions\\fR]",
            ".SH DESCRIPTION",
            _escape("One program for three places: PID 1 of a machine (roost init), PID 1 "
                    "of a container (roost run, see roost-run(1)), or a supervisor of a "
                    "directory of service files (roost up, see roost.toml(5)). The other "
                    "commands speak to a running roost over its control socket."),
            ".SH COMMANDS"]
    for action in grammar._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        for name, sub in action.choices.items():
            if name not in helps:
                continue
            _summary, description, example = helps[name]
            usage = sub.format_usage().removeprefix("usage: ").strip()
            out += [".SS " + _escape(name), ".nf", _escape(usage), ".fi",
                    ".PP", _inline(description.replace("\n", " "))]
            for option in sub._actions:
                if not option.option_strings or option.help in (None, argparse.SUPPRESS):
                    continue
                if "-h" in option.option_strings:
                    continue
                flags = ", ".join(option.option_strings)
                metavar = f" {option.metavar}" if option.metavar else ""
                helptext = option.help % {"default": option.default} if "%(" in option.help \
                    else option.help
                out += [".TP", f"\\fB{_escape(flags)}\\fR{_escape(metavar)}", _inline(helptext)]
            examples = "\n".join(line.strip() for line in example.splitlines())
            out += [".PP", "Example:", ".RS", ".nf", _escape(examples), ".fi", ".RE"]
    out += [".SH FILES", ".TP", "\\fI/etc/roost\\fR",
            "the configuration directory of a system's roost (roost.toml(5))",
            ".TP", "\\fI/run/roost/control\\fR", "the control socket of a system's roost",
            ".SH SEE ALSO", "roost-run(1), roost.toml(5)"]
    return "\n".join(out) + "\n"


def roost_run_1() -> str:
    """roost-run(1), from `roost run`'s usage text."""
    from roost.container.options import USAGE  # noqa: PLC0415 - after main() put src on sys.path

    out = _header("roost-run", "1", "User Commands")
    out += [".SH NAME", "roost-run \\- run a command as a container's init",
            ".SH SYNOPSIS", ".B roost run", "[\\fIoptions\\fR] \\fB\\-\\-\\fR \\fICMD\\fR...",
            ".SH DESCRIPTION",
            _escape("roost run forwards signals to CMD, reaps every orphan, and exits with "
                    "CMD's status (128+N when signal N ended it). Its whole usage:"),
            ".PP", ".nf", _escape(USAGE.rstrip()), ".fi",
            ".SH SEE ALSO", "roost(8), roost.toml(5)"]
    return "\n".join(out) + "\n"


def roost_toml_5() -> str:
    """roost.toml(5), from docs/config.md."""
    lines = (REPO / "docs" / "config.md").read_text().splitlines()
    out = _header("roost.toml", "5", "File Formats Manual")
    out += [".SH NAME", "roost.toml \\- roost's configuration directory and service files"]
    in_code = False
    paragraph: list[str] = []

    def flush() -> None:
        if paragraph:
            out.extend([".PP", _inline(" ".join(paragraph))])
            paragraph.clear()

    for line in lines[1:]:  # the first line is the page's own title
        if line.startswith("```"):
            flush()
            out.append(".RS\n.nf" if not in_code else ".fi\n.RE")
            in_code = not in_code
        elif in_code:
            out.append(_escape(line) if line else ".sp")
        elif line.startswith("## "):
            flush()
            out.append(".SH " + _inline(line[3:].upper()))
        elif line.startswith("### "):
            flush()
            out.append(".SS " + _inline(line[4:]))
        elif line.startswith("|"):
            flush()
            cells = [c.strip() for c in line.strip("|").split("|")]
            if all(set(c) <= set("- :") for c in cells):
                continue  # the header's rule
            out += [".TP", _inline(cells[0]), _inline(" \\(em ".join(c for c in cells[1:] if c))
                    .replace("\\e(em", "\\(em")]
        elif line.startswith(("- ", "* ")):
            flush()
            out += [".IP \\(bu 2", _inline(line[2:])]
        elif not line.strip():
            flush()
        else:
            paragraph.append(line.strip())
    flush()
    out += [".SH SEE ALSO", "roost(8), roost-run(1)"]
    return "\n".join(out) + "\n"


def pages() -> dict[str, str]:
    """Each page's file name and text."""
    return {"roost.8": roost_8(), "roost-run.1": roost_run_1(), "roost.toml.5": roost_toml_5()}


def main() -> int:
    """Write every page beside this script."""
    sys.path.insert(0, str(REPO / "src"))
    for name, text in pages().items():
        (HERE / name).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
