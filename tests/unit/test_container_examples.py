"""examples/container/: the compose file and the Pod spec parse, and their numbers agree.

Each roost command line in them goes through roost run's own parser; the probes test
the file roost is told to keep; each stop fits in the time its orchestrator gives.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from roost.container.options import parse

yaml = pytest.importorskip("yaml", reason="SKIPPED: PyYAML, a test extra, is missing: "
                           "pip install -e '.[test]'")

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "container"
KILL_WAIT = 2.0  # roost's last wait after KILL (container/init.py)


def load(name: str) -> Any:
    return yaml.safe_load((EXAMPLES / name).read_text())


def entrypoint() -> list[str]:
    """The Dockerfile's ENTRYPOINT and CMD (exec form), joined as docker joins them."""
    text = (EXAMPLES / "Dockerfile").read_text().replace("\\\n", " ")
    parts = {}
    for key in ("ENTRYPOINT", "CMD"):
        found = re.search(rf"^{key} (\[.*\])$", text, re.MULTILINE)
        assert found, f"no exec-form {key}"
        parts[key] = json.loads(found.group(1))
    return [*parts["ENTRYPOINT"], *parts["CMD"]]


ENV_BLOCK = ["env", "--block-signal", "ROOST_LAUNCHER=blocked"]


def roost_run(argv: list[str]) -> Any:
    if argv[:3] == ENV_BLOCK:
        argv = argv[3:]
    assert argv[:2] == ["roost", "run"], argv
    return parse(argv[2:])


def test_the_dockerfile_starts_roost_with_its_signals_blocked() -> None:
    # docs/container-init.md: env in the entrypoint closes the start-up window entirely.
    assert entrypoint()[:3] == ENV_BLOCK


def seconds(text: str) -> float:
    found = re.fullmatch(r"(\d+)s", text)
    assert found, text
    return float(found.group(1))


def test_the_dockerfile_health_check_tests_the_ready_file() -> None:
    opts = roost_run(entrypoint())
    text = (EXAMPLES / "Dockerfile").read_text().replace("\\\n", " ")
    check = re.search(r"^HEALTHCHECK .*CMD (\[.*\])$", text, re.MULTILINE)
    assert check and json.loads(check.group(1)) == ["test", "-e", opts.ready_file]


def test_compose_waits_for_roosts_whole_stop_and_probes_its_file() -> None:
    compose = load("compose.yaml")
    web = compose["services"]["web"]
    opts = roost_run(entrypoint())
    assert web["healthcheck"]["test"] == ["CMD", "test", "-e", opts.ready_file]
    assert seconds(web["stop_grace_period"]) >= opts.pre_stop_delay + opts.grace + KILL_WAIT
    assert web["init"] is False
    client = compose["services"]["client"]
    assert client["depends_on"]["web"]["condition"] == "service_healthy"


def test_the_pod_stop_fits_its_grace_period_and_its_probes_test_the_file() -> None:
    pod = load("pod.yaml")
    assert pod["kind"] == "Pod"
    spec = pod["spec"]
    (container,) = spec["containers"]
    opts = roost_run([*container["command"], *container["args"]])
    assert opts.command == container["args"]
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    # The hook stands for --pre-stop-delay: one of the two, never both.
    assert opts.pre_stop_delay == 0
    assert pre_stop + opts.grace + KILL_WAIT < spec["terminationGracePeriodSeconds"]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["exec"]["command"] == ["test", "-e", opts.ready_file], probe
