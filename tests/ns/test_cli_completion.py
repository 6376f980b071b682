"""Shell completion: `roost completion SHELL`, run in the real shells against a real roost.

bash through its completion function (COMP_WORDS in, COMPREPLY out), fish through
`complete -C` (what it would offer for a command line), zsh checked by its own parser.
Service names come from the running roost, as any user may ask it.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.ns.supervisor_kit import ConfigDir, running
from tests.support import ROOST

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("unshare_required")]


def _shell(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: tests/run.sh installs it (apt-get install {name})")
    return found


def _script(shell: str) -> str:
    ran = subprocess.run([*ROOST, "completion", shell], capture_output=True, text=True,
                         timeout=30, check=True)
    return ran.stdout


def _env(control: str) -> dict[str, str]:
    # The completion runs `roost` from PATH, as a user's shell would.
    bin_dir = str(Path(ROOST[0]).parent)
    return {"PATH": f"{bin_dir}:/usr/bin:/bin", "ROOST_CONTROL": control, "HOME": "/tmp"}


def bash_complete(script: str, words: list[str], control: str) -> list[str]:
    """What bash's completion function offers for `words` (the last one being typed)."""
    quoted = " ".join(f"'{w}'" for w in words)
    program = (f"{script}\nCOMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}; _roost; "
               'printf "%s\\n" "${COMPREPLY[@]}"')
    ran = subprocess.run([_shell("bash"), "-c", program], capture_output=True, text=True,
                         timeout=30, env=_env(control), check=True)
    return ran.stdout.split()


def test_bash_and_fish_complete_commands_options_and_services(tmp_path: Path) -> None:
    config = ConfigDir(tmp_path / "conf")
    config.service("web", command=["sleep", "600"])
    config.service("worker", command=["sleep", "600"])
    with running(config, "pid1", tmp_path) as roost:
        roost.wait_state("worker", "up", timeout=30)
        bash = _script("bash")
        assert bash_complete(bash, ["roost", "st"], roost.control) == [
            "status", "start", "stop"]
        assert bash_complete(bash, ["roost", "log", "--s"], roost.control) == ["--since"]
        assert bash_complete(bash, ["roost", "run", "--pre"], roost.control) == [
            "--pre-stop-delay"]
        assert bash_complete(bash, ["roost", "restart", "w"], roost.control) == [
            "web", "worker"]

        fish = tmp_path / "roost.fish"
        fish.write_text(_script("fish"))
        ran = subprocess.run(
            [_shell("fish"), "--no-config", "-c",
             f"source {fish}; complete -C 'roost sto'; complete -C 'roost stop wo'; "
             "complete -C 'roost events --j'"],
            capture_output=True, text=True, timeout=30, env=_env(roost.control), check=True)
        offered = [line.split("\t")[0] for line in ran.stdout.splitlines()]
        assert offered == ["stop", "worker", "--json"], ran


def test_zsh_reads_its_script() -> None:
    script = _script("zsh")
    assert script.startswith("#compdef roost\n")
    ran = subprocess.run([_shell("zsh"), "-n", "-c", script], capture_output=True, text=True,
                         timeout=30, check=False)
    assert ran.returncode == 0, ran.stderr
