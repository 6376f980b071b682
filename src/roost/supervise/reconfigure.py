"""A reload of the configuration, applied to a running supervisor: only what changed moves.

All of it or nothing: whatever the new services need is opened first, and
ConfigInvalid (the running configuration untouched) says why it could not be.
"""

from __future__ import annotations

from roost.config.errors import ConfigError, ConfigInvalid
from roost.core import machine, model
from roost.kernel import console
from roost.supervise import budget

TYPE_CHECKING = False
if TYPE_CHECKING:
    from roost.core.model import Config
    from roost.supervise.runtime import Runtime
    from roost.supervise.supervisor import Supervisor


def apply(sup: Supervisor, new: Config, log_files: bool = False) -> dict[str, list[str]]:
    """Apply a validated configuration: add, remove and restart only what changed.

    All of it or nothing: whatever the new services need is opened first, and
    ConfigInvalid (the running configuration untouched) says why it could not be.
    """
    old = {name: rt.config for name, rt in sup.services.items() if not rt.removing}
    added, removed, changed = model.changes(old, new.services)
    # What is held until the reload has settled: the new services, those still
    # stopping, and the changed ones in both forms (a notify socket outlives its type).
    held = [*new.services.values(), *(rt.config for rt in sup.services.values()
                                      if rt.name not in new.services or rt.removing)]
    held += [sup.services[name].config for name in changed]
    budget.check(new.directory, held, log_files or bool(sup.log_settings.directory))
    made = sup._add_all(new.directory, [new.services[name] for name in added])
    opened: list[Runtime] = []
    try:
        for name in changed:
            rt = sup.services[name]
            if new.services[name].type == "notify" and rt.notify_sock is None:
                sup._open_notify_socket(rt)
                opened.append(rt)
    except OSError as exc:
        for rt in made:
            sup._discard(rt)
        for rt in opened:
            rt.notify_sock.close()  # type: ignore[union-attr]
            rt.notify_sock = None
        raise ConfigInvalid([ConfigError(new.directory, f"cannot open a notify socket: "
                                         f"{exc.strerror}; nothing was changed")]) from None
    for name in removed:
        _retire(sup, sup.services[name])
    restart: list[str] = []
    for name in changed:
        rt = sup.services[name]
        was_running = rt.machine.state in (*machine.RUNNING, machine.BACKOFF)
        sup.order.reconfigure(new.services[name])
        if was_running:
            restart.append(name)
    sup.broken = {}
    if restart:
        sup.restart(restart)
    sup._apply(sup.order.start([n for n in added if new.services[n].autostart],
                                 sup.loop.now(), explicit=False))
    return {"added": added, "removed": removed, "changed": changed}

def _retire(sup: Supervisor, rt: Runtime) -> None:
    """Stop a service that left the configuration, then forget it."""
    rt.removing = True
    sup.stop([rt.name], reason="removed from the configuration")
    sup.when(lambda: sup.order.settled_down([rt.name]), lambda: _remove(sup, rt))

def _remove(sup: Supervisor, rt: Runtime) -> None:
    if sup.services.get(rt.name) is not rt:
        return
    rt.release(sup.loop)
    sup.tracker.forget(rt.name)
    sup.daemons.forget(rt.name)
    sup.order.remove(rt.name)
    del sup.services[rt.name]
    console.say(f"{rt.name}: removed")
