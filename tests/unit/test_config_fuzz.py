"""The configuration reader under fuzzing: whatever a file holds, an error list, never a raise.

First the stored corpus (tests/corpus/config: files that once broke a reader, nesting
1,000 deep, a 4,301-digit integer, NUL, bytes that are not UTF-8, a 100 KB key),
each as a service file and as roost.toml; then hypothesis: random bytes, and random
TOML documents whose keys are roost's own (and some that are not) with values of every
TOML type, nested, huge and hostile. `read` is what `roost check`, `roost up` and a
reload run (in a child, in roost); it must return errors that name the file, each one
line and bounded, and a service it accepts must be in the configuration.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from roost.config import check
from roost.config.load import read

CORPUS = sorted((Path(__file__).resolve().parents[1] / "corpus" / "config").glob("*.toml"))
MAX_MESSAGE = 600  # no error line may grow with its input (the path included)


@pytest.fixture
def directory() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="roost-fuzz-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def read_bytes(directory: Path, name: str, data: bytes) -> None:
    """Write one file into an otherwise empty directory and read it as roost would."""
    for old in directory.iterdir():
        old.unlink()
    target = directory / name
    target.write_bytes(data)
    config, errors = read(str(directory))
    for error in errors:
        text = str(error)  # as `roost check` prints it
        assert error.path.startswith(str(directory)), error.path
        assert "\n" not in text and "Traceback" not in text, text
        assert len(text) < MAX_MESSAGE, (len(text), text[:200])
    if name != "roost.toml" and not errors:
        assert target.stem in config.services


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
@pytest.mark.parametrize("as_name", ["svc.toml", "roost.toml"])
def test_the_stored_corpus(directory: Path, path: Path, as_name: str) -> None:
    read_bytes(directory, as_name, path.read_bytes())


def toml(value: Any) -> str:
    """Render a Python value as a TOML value (inline tables for dicts)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml(v) for v in value) + "]"
    return "{ " + ", ".join(f"{json.dumps(k)} = {toml(v)}" for k, v in value.items()) + " }"


scalars = st.one_of(
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["TERM", "fd:3", "fd:1", "0o022", "root", "nobody", "always", "notify",
                     "-1", "999999999999", "\x00", "sh", "/bin/true", ""]),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.text(max_size=10), inner, max_size=4)), max_leaves=12)
service_keys = st.sampled_from([*sorted(check.SERVICE_KEYS), "nope", "Command", ""])
setting_keys = st.sampled_from([*sorted(check.SETTINGS_KEYS), "nope"])


def document(keys: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """A TOML document of `keys` with any values; a command most of the time."""
    body = st.dictionaries(keys, values, max_size=8)
    command = st.one_of(st.just({"command": ["/bin/true"]}), st.just({}))
    return st.builds(lambda c, b: "".join(f"{json.dumps(k)} = {toml(v)}\n"
                                          for k, v in {**c, **b}.items()), command, body)


FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


@FUZZ
@given(data=st.binary(max_size=300))
def test_random_bytes(directory: Path, data: bytes) -> None:
    read_bytes(directory, "svc.toml", data)


@FUZZ
@given(text=document(service_keys))
def test_random_service_files(directory: Path, text: str) -> None:
    read_bytes(directory, "svc.toml", text.encode("utf-8", "surrogatepass"))


@FUZZ
@given(text=document(setting_keys))
def test_random_settings(directory: Path, text: str) -> None:
    read_bytes(directory, "roost.toml", text.encode("utf-8", "surrogatepass"))
