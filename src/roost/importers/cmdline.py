"""A systemd command line as systemd reads it: words, quotes, escapes, specifiers, `$VAR`.

The rules of systemd.service(5), "Command lines", and of systemd.exec(5) for
`Environment=` and `EnvironmentFile=`; used by `roost import systemd` and by a
configuration directory that holds unit files.
"""

from __future__ import annotations

import re

from roost.importers.unitfile import Refused, specifier

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
            "\\": "\\", '"': '"', "'": "'", "s": " "}


def split(line: str, env: Mapping[str, str], specifiers: Mapping[str, str],
          where: str, runtime: bool = False) -> list[str]:
    """A command line as systemd splits it into words.

    `runtime`: for a command roost expands again at its start (exec_start_pre...): a
    variable the unit does not set ($MAINPID) is left for then, and a dollar is kept
    as `$$`.
    """
    words: list[str] = []
    i, n = 0, len(line)
    while i < n:
        while i < n and line[i].isspace():
            i += 1
        if i >= n:
            break
        whole = re.match(r"\$([A-Za-z_][A-Za-z0-9_]*)(?=\s|$)", line[i:])
        if whole is not None and (whole.group(1) in env or not runtime):
            # "$VAR" as a word of its own: the value split on white space, zero or more words.
            words += [v.replace("$", "$$") if runtime else v
                      for v in env.get(whole.group(1), "").split()]
            i += whole.end()
            continue
        word, quoted = [], False
        while i < n and not line[i].isspace():
            c = line[i]
            if c in "'\"" and not quoted:
                end = line.find(c, i + 1)
                if end < 0:
                    raise Refused(where, "unbalanced quotes")
                word.append(unescape(line[i + 1:end], env, specifiers, where, runtime))
                i = end + 1
                continue
            j = i
            while j < n and not line[j].isspace() and line[j] not in "'\"":
                j += 2 if line[j] == "\\" else 1
            word.append(unescape(line[i:j], env, specifiers, where, runtime))
            i = j
        words.append("".join(word))
    return words


def unescape(text: str, env: Mapping[str, str], specifiers: Mapping[str, str],
              where: str, runtime: bool = False) -> str:
    """One word's text with its escapes, specifiers and variables resolved (see split)."""
    out, i = [], 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "x" and re.match(r"[0-9a-fA-F]{2}", text[i + 2:i + 4]):
                out.append(chr(int(text[i + 2:i + 4], 16)))
                i += 4
                continue
            out.append(_ESCAPES.get(nxt, nxt))
            i += 2
        elif c == "%" and i + 1 < len(text):
            out.append(specifier(text[i + 1], specifiers, where))
            i += 2
        elif c == "$" and i + 1 < len(text):
            m = re.match(r"\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*)", text[i + 1:])
            if m is None:
                doubled = runtime and text[i + 1] == "$"
                out.append("$$" if doubled else c)
                i += 2 if doubled else 1
                continue
            name = m.group(1) or m.group(2)
            if runtime and name not in env:
                out.append(text[i:i + 1 + m.end()])
            else:
                value = env.get(name, "")
                out.append(value.replace("$", "$$") if runtime else value)
            i += 1 + m.end()
        else:
            out.append(c)
            i += 1
    return "".join(out)


def environment(value: str, specifiers: Mapping[str, str], where: str) -> dict[str, str]:
    """`Environment=` assignments: words as systemd splits them, each NAME=value."""
    pairs = {}
    for word in split(value, {}, specifiers, where):
        name, sep, val = word.partition("=")
        if sep and name:
            pairs[name] = val
    return pairs


def environment_file(spec: str, where: str) -> tuple[dict[str, str], str]:
    """The NAME=value lines of an EnvironmentFile (`-` prefix: may be missing)."""
    optional = spec.startswith("-")
    path = spec[1:] if optional else spec
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        if optional:
            return {}, f"EnvironmentFile {path} is missing (optional)"
        raise Refused(where, f"EnvironmentFile {path}: {exc.strerror}",
                      "EnvironmentFile") from None
    pairs: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        name, sep, val = line.removeprefix("export ").partition("=")
        if sep:
            val = val.strip()
            if len(val) >= 2 and val[0] == val[-1] and val[0] in "'\"":
                val = val[1:-1]
            pairs[name.strip()] = val
    return pairs, f"EnvironmentFile {path} read at import"
