"""Shell completion for bash, zsh and fish, written from the command-line parser itself.

`roost completion SHELL` prints the script, so it can never name an option the parser
does not have. Service names are asked of the running roost (`roost status`, which any
user may run) at the moment of completion.
"""

from __future__ import annotations

import argparse

# Commands whose positional arguments are service names.
TAKES_SERVICES = ("status", "start", "stop", "restart", "signal", "log", "events", "tree",
                  "analyze")
SHELLS = ("bash", "zsh", "fish")
# The names of the services roost knows, one per line: the first column of the table.
_NAMES = "roost status 2>/dev/null | awk 'NR > 1 { print $1 }'"
# The same inside fish's single quotes, which cannot hold another pair.
_FISH_NAMES = 'roost status 2>/dev/null | awk "NR > 1 { print \\$1 }"'


def commands(parser: argparse.ArgumentParser, run_usage: str) -> dict[str, list[str]]:
    """Each subcommand and its options; `roost run`'s from its usage text, its own parser's."""
    table: dict[str, list[str]] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            table = {name: [o for a in sub._actions for o in a.option_strings]
                     for name, sub in action.choices.items()}
    table["run"] = [word.split("=")[0] for line in run_usage.splitlines()
                    for word in line.strip().split("  ")[0].replace(",", " ").split()
                    if word.startswith("-") and len(word) > 1 and word != "--"]
    return table


def script(shell: str, parser: argparse.ArgumentParser, run_usage: str) -> str:
    """The completion script for `shell`."""
    table = commands(parser, run_usage)
    return {"bash": _bash, "zsh": _zsh, "fish": _fish}[shell](table)


def _bash(table: dict[str, list[str]]) -> str:
    cases = "".join(f"        {name}) options=\"{' '.join(opts)}\" ;;\n"
                    for name, opts in table.items())
    return f"""# bash completion for roost: eval "$(roost completion bash)"
_roost() {{
    local cur=${{COMP_WORDS[COMP_CWORD]}} options=""
    if [ "$COMP_CWORD" -eq 1 ]; then
        COMPREPLY=($(compgen -W "{' '.join(table)} --help --version" -- "$cur"))
        return
    fi
    case ${{COMP_WORDS[1]}} in
{cases}    esac
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$options" -- "$cur"))
        return
    fi
    case ${{COMP_WORDS[1]}} in
        {'|'.join(TAKES_SERVICES)}) COMPREPLY=($(compgen -W "$({_NAMES})" -- "$cur")) ;;
        *) COMPREPLY=($(compgen -f -- "$cur")) ;;
    esac
}}
complete -F _roost roost
"""


def _zsh(table: dict[str, list[str]]) -> str:
    cases = "".join(f"        {name}) options=({' '.join(opts)}) ;;\n"
                    for name, opts in table.items())
    return f"""#compdef roost
# zsh completion for roost: roost completion zsh > "${{fpath[1]}}/_roost"
_roost() {{
    local -a options
    if (( CURRENT == 2 )); then
        compadd -- {' '.join(table)} --help --version
        return
    fi
    case $words[2] in
{cases}    esac
    if [[ $PREFIX == -* ]]; then
        compadd -- $options
        return
    fi
    case $words[2] in
        {'|'.join(TAKES_SERVICES)}) compadd -- ${{(f)"$({_NAMES})"}} ;;
        *) _files ;;
    esac
}}
compdef _roost roost
"""


def _fish(table: dict[str, list[str]]) -> str:
    lines = ["# fish completion for roost: roost completion fish > "
             "~/.config/fish/completions/roost.fish",
             "complete -c roost -f",
             f"complete -c roost -n __fish_use_subcommand -a '{' '.join(table)}'"]
    for name, opts in table.items():
        for opt in opts:
            flag = f"-l {opt[2:]}" if opt.startswith("--") else f"-s {opt[1:]}"
            lines.append(f"complete -c roost -n '__fish_seen_subcommand_from {name}' {flag}")
    lines.append(f"complete -c roost -n '__fish_seen_subcommand_from {' '.join(TAKES_SERVICES)}'"
                 f" -a '({_FISH_NAMES})'")
    return "\n".join(lines) + "\n"
