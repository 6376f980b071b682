"""Read a configuration directory in a short-lived child process.

The TOML parser, and everything checking a configuration drags in, costs a
supervisor more than a megabyte it would hold for as long as it runs, for work
done once at start and once per reload. A forked child does that work and
hands the result back as JSON over a pipe, then exits; the parser never enters
the supervisor. A parser that fails in a way no check foresaw (a recursion
error, a crash) takes down the child, not PID 1: the caller gets an error.
"""

from __future__ import annotations

import _signal
import json
import os
import select
import time

from roost.config.errors import ConfigError, ConfigInvalid
from roost.core.model import Config, HealthCheck, ServiceConfig, Settings

TYPE_CHECKING = False
if TYPE_CHECKING:
    from roost.kernel.reaper import Reaper

TIMEOUT = 30.0  # seconds the reader may take before it is killed


def _slots(obj: ServiceConfig | Settings) -> dict[str, object]:
    # Only what differs from the defaults: the reply, and the memory roost needs to read
    # it, grow with what the files say, not with every key roost knows.
    blank = Settings() if isinstance(obj, Settings) else ServiceConfig("", "", [])
    fields = {slot: getattr(obj, slot) for slot in type(obj).__slots__
              if slot in ("name", "path", "argv") or getattr(obj, slot) != getattr(blank, slot)}
    health = fields.get("health")
    if isinstance(health, HealthCheck):
        fields["health"] = health.fields()
    return fields


def _encode(config: Config, errors: list[ConfigError]) -> bytes:
    return json.dumps({
        "directory": config.directory,
        "settings": _slots(config.settings),
        "services": [_slots(s) for s in config.services.values()],
        "errors": [[e.path, e.message, e.key, e.line] for e in errors],
        "warnings": config.warnings,
    }).encode()


def _decode(data: bytes) -> tuple[Config, list[ConfigError]]:
    raw = json.loads(data)
    settings = Settings()
    for slot, value in raw["settings"].items():
        setattr(settings, slot, value)
    services = {}
    for fields in raw["services"]:
        service = ServiceConfig(fields["name"], fields["path"], fields["argv"])
        for slot, value in fields.items():
            setattr(service, slot, value)
        if isinstance(service.health, dict):
            service.health = HealthCheck.from_fields(service.health)
        services[service.name] = service
    errors = [ConfigError(path, message, key, line) for path, message, key, line in raw["errors"]]
    return Config(raw["directory"], services, settings, raw["warnings"]), errors


def _child(directory: str, write_fd: int) -> None:
    status = 1
    try:
        from roost.config.load import read as read_here  # noqa: PLC0415 - lazy (child): tomllib stays out of roost

        data = _encode(*read_here(directory))
        while data:
            data = data[os.write(write_fd, data) :]
        status = 0
    except BaseException:  # noqa: BLE001 - say why, then leave: never return into roost
        from roost.kernel import console  # noqa: PLC0415 - lazy (child): the failure path only

        console.error_trace(f"reading {directory}")
    finally:
        os._exit(status)


def read(directory: str, reaper: Reaper | None = None) -> tuple[Config, list[ConfigError]]:
    """Read and check `directory` in a child; return the configuration and every error.

    With a `reaper` (a running supervisor) the child's exit goes through it; without
    one (before the supervisor exists) the child is waited for here.
    """
    directory = os.path.abspath(directory)
    try:
        read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    except OSError as exc:
        raise ConfigInvalid([ConfigError(directory, f"cannot read the configuration: "
                                         f"{exc.strerror}")]) from None
    # Blocked across fork, and never unblocked in the child: no handler of roost's
    # may run there, nor write into roost's signal wakeup pipe.
    old_mask = _signal.pthread_sigmask(_signal.SIG_BLOCK, _signal.valid_signals())
    pid = -1
    try:
        pid = os.fork()
        if pid == 0:
            os.close(read_fd)
            _signal.set_wakeup_fd(-1)
            _child(directory, write_fd)
    except OSError as exc:
        os.close(read_fd)
        os.close(write_fd)
        raise ConfigInvalid([ConfigError(directory, f"cannot read the configuration: "
                                         f"{exc.strerror}")]) from None
    finally:
        if pid != 0:
            _signal.pthread_sigmask(_signal.SIG_SETMASK, old_mask)
    os.close(write_fd)
    if reaper is not None:
        reaper.watch(pid, lambda _pid, _status: None)
    chunks = []
    deadline = time.monotonic() + TIMEOUT
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([read_fd], [], [], left)[0]:
                os.kill(pid, _signal.SIGKILL)
                raise ConfigInvalid([ConfigError(directory, f"reading the configuration took "
                                                 f"more than {TIMEOUT:g}s")])
            chunk = os.read(read_fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_fd)
        if reaper is None:
            os.waitpid(pid, 0)
    if not chunks:
        raise ConfigInvalid([ConfigError(directory, "the configuration reader failed "
                                         "(see roost's messages)")])
    return _decode(b"".join(chunks))


def load(directory: str, reaper: Reaper | None = None) -> Config:
    """Read `directory` in a child; raise ConfigInvalid listing every error."""
    config, errors = read(directory, reaper)
    if errors:
        raise ConfigInvalid(errors)
    return config
