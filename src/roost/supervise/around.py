"""The commands around a service's main one (exec_start_pre...), run as the service runs.

The machine (core/commands.py) says which command runs and what its end leads to;
this module starts it with the service's user, environment, limits and log, and
reports its end. A command is roost's own child, not a member of the service: it
is ended through its process group, and its leftovers are not the service's.
"""

from __future__ import annotations

import _signal

from roost.core.commands import FIRST
from roost.core.exits import ExitStatus
from roost.kernel import console
from roost.kernel.spawn import SpawnError
from roost.supervise import command

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from roost.core.actions import Action
    from roost.kernel.loop import Loop
    from roost.kernel.reaper import Reaper
    from roost.kernel.spawn import Child, Command
    from roost.supervise.runtime import Runtime

_VARIABLE = r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)"
_WORD = r"\$([A-Za-z_][A-Za-z0-9_]*)"


def expand(argv: list[str], env: Mapping[str, str]) -> list[str]:
    """`$VAR` and `${VAR}` in a command, as systemd expands them (`$$` is a dollar).

    A word that is only `$VAR` becomes the value's words, split on white space (none if
    it is empty or unset); `${VAR}` is replaced inside its word, which stays one word.
    """
    if not any("$" in word for word in argv):
        return argv
    import re  # noqa: PLC0415 - lazy (memory): only commands with variables need it

    words: list[str] = []
    for word in argv:
        if (whole := re.fullmatch(_WORD, word)) is not None:
            words += env.get(whole.group(1), "").split()
            continue
        words.append(re.sub(_VARIABLE, lambda m: "$" if m.group(0) == "$$" else
                                   env.get(m.group(1) or m.group(2), ""), word))
    return words


class Around:
    """Runs the commands around each service's main one, in the supervisor's reactor."""

    def __init__(self, loop: Loop, reaper: Reaper, spawner: Callable[[Command], Child],
                 base_env: Mapping[str, str], event: Callable[[Runtime, list[Action]], None],
                 ended: Callable[[Runtime], None], *, pdeathsig: int = 0,
                 nofile: tuple[int, int] | None = None):
        self._loop = loop
        self._reaper = reaper
        self._spawner = spawner
        self._env = base_env
        self._event = event
        # Told when a command ended and its service goes on stopping: it may be all it
        # waited for.
        self._ended = ended
        self._pdeathsig = pdeathsig
        self._nofile = nofile

    def run(self, rt: Runtime, key: str, index: int) -> None:
        """Start command `index` of `key`; its end goes to the machine as command_exited()."""
        cfg = rt.config
        flags, argv = getattr(cfg, key)[index]
        try:
            cmd = command.build(cfg, self._env, log_fds=rt.log.fds(cfg.stderr == "stdout"),
                                argv=argv, pdeathsig=self._pdeathsig, nofile=self._nofile)
            if rt.machine.pid is not None:
                cmd.env["MAINPID"] = str(rt.machine.pid)
            if ":" not in flags:
                cmd.argv = expand(cmd.argv, cmd.env)
            if "@" in flags:  # the program, then the argv[0] it is given
                cmd.executable, cmd.argv = cmd.argv[0], cmd.argv[1:]
            if not cmd.argv:
                raise ValueError("the command is empty once its variables are expanded")
            if "+" in flags or "!" in flags:  # with roost's own privileges, not the user's
                cmd.uid = cmd.gid = cmd.groups = None
                cmd.no_new_privs = False
            if key in FIRST and index == 0:
                # The run begins, and its directories are made: systemd makes
                # RuntimeDirectory= before ExecStartPre=, and `sshd -t` needs it.
                rt.begin_run()
                command.make_directories(cfg, cmd, self._env)
            child = self._spawner(cmd)
        except (SpawnError, OSError, ValueError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            self._event(rt, rt.machine.command_exited(ExitStatus(code=127), self._loop.now(),
                                                      f"cannot start: {why}"))
            return
        rt.command = child
        console.debug(f"{rt.name}: {key} {index + 1} started as {child.pid}: {cmd.argv}")
        what = f"{key} {index + 1}" + (" (failure ignored)" if "-" in flags else "")
        self._reaper.watch(child.pid, lambda _pid, status: self._exited(rt, child, status, what))

    def kill(self, rt: Runtime, signum: int) -> None:
        """Send `signum` to the running command's process group (it may be stopped: CONT)."""
        child = rt.command
        if child is None:
            return
        child.signal_group(signum)
        if signum != _signal.SIGKILL:
            child.signal_group(_signal.SIGCONT)

    def _exited(self, rt: Runtime, child: Child, status: ExitStatus, what: str) -> None:
        known, error = child.exec_result()
        child.close()
        if rt.command is not child:
            return  # a command of a service since removed, or replaced
        rt.command = None
        m = rt.machine
        detail = f"cannot start: {error}" if known and error else None
        moves = m.command_exited(status, self._loop.now(), detail)
        if detail is not None or not status.success:
            console.say(f"{rt.name}: {what}: {detail or status.describe()}")
        self._event(rt, moves)
        if not m.step:
            self._ended(rt)
