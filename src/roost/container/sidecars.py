"""`roost run -c DIR -- CMD`: a container's main command with supervised sidecar services.

The services of DIR start first, in dependency order; CMD starts once every
service named with `--after` is ready. When CMD exits, the services stop in
reverse order, then whatever is left gets the usual sweep, and roost exits
with CMD's status.
"""

from __future__ import annotations

import os
import sys

from roost.config.reader import read
from roost.container.options import HANDLED, IGNORED, STOP_SIGNALS
from roost.control.protocol import default_address
from roost.core import machine
from roost.kernel import console
from roost.kernel.spawn import SpawnError
from roost.up import Manager

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from roost.container.init import ContainerInit
    from roost.container.options import RunOptions
    from roost.kernel.loop import Loop
    from roost.kernel.reaper import Reaper

CONFIG_ERROR = 2
SIDECAR_FAILED = 1


def run(opts: RunOptions, loop: Loop, reaper: Reaper, init: ContainerInit) -> int:
    """Supervise the sidecars, run the main command in its turn, return its status."""
    assert opts.config is not None
    config, errors = read(opts.config)
    unknown = [name for name in opts.after if name not in config.services]
    if errors or unknown:
        for error in errors:
            sys.stderr.write(f"{error}\n")
        for name in unknown:
            sys.stderr.write(f"roost run: --after {name}: no such service in {opts.config}\n")
        sys.stderr.write("roost run: configuration invalid; nothing started\n")
        return CONFIG_ERROR
    address = opts.control or config.settings.control or default_address()
    manager = Manager(config, control=address, loop=loop, reaper=reaper)
    try:
        manager.open_control()
    except OSError as exc:
        console.say(f"warning: no control socket ({address}: {exc}); roost status will not "
                    "reach this container")
    supervisor = manager.supervisor
    outcome: dict[str, int] = {}

    def finish(code: int) -> None:
        outcome["code"] = code
        loop.stop()

    def stopping() -> None:
        if manager.announcer is not None:
            manager.announcer.stop()

    def stop_then(code: int) -> None:
        stopping()
        supervisor.stop_all(then=lambda: finish(code))

    def before_sweep(sweep: Callable[[], None]) -> None:
        stopping()
        supervisor.stop_all(then=sweep)

    def on_signal(signum: int) -> None:
        if init.child is None and init.status is None and signum in STOP_SIGNALS:
            if "stopping" not in outcome:
                outcome["stopping"] = 1
                console.say("stop requested before the main command started")
                stop_then(128 + signum)
            return
        init.on_signal(signum)

    order = supervisor.order

    def start_main() -> None:
        failed = [name for name in opts.after
                  if order.machines[name].state == machine.FAILED]
        if failed or "stopping" in outcome:
            for name in failed:
                console.say(f"{name} failed ({order.machines[name].reason}); "
                            f"not starting {opts.command[0]}")
            outcome["stopping"] = 1
            stop_then(SIDECAR_FAILED)
            return
        try:
            init.start()
        except SpawnError as exc:
            console.say(str(exc))
            stop_then(exc.exit_code)
            return
        os.chdir("/")  # the main command keeps the directory roost started in; roost holds none

    init.before_sweep = before_sweep
    loop.handle_signals(HANDLED, on_signal, ignore=IGNORED)
    supervisor.start_all()
    # $NOTIFY_SOCKET only: --ready-fd and --ready-file follow the main command (init.py).
    manager.announce()
    supervisor.when(lambda: order.ready_or_failed(opts.after), start_main)
    loop.run()
    manager.close()
    if init.exit_code is not None:
        return init.exit_code
    return outcome.get("code", SIDECAR_FAILED)
