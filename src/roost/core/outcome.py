"""How a run ended, as a restart policy sees it, and whether the policy restarts after it.

systemd.service(5)'s table, as model.RESTARTS_AFTER holds it: each policy restarts
after some ends of a run ("success", "code", "signal", "timeout", "watchdog",
"unhealthy"), and a restart_prevent_exit_status overrides every policy.
"""

from __future__ import annotations

from roost.core.model import RESTARTS_AFTER

TYPE_CHECKING = False
if TYPE_CHECKING:
    from roost.core.exits import ExitStatus
    from roost.core.model import ServiceConfig


def judge(config: ServiceConfig, status: ExitStatus) -> tuple[bool, str, bool]:
    """The main process's end: (succeeded, its cause, whether a restart is prevented)."""
    number = status.number
    success = status.success or number in config.success_exit_status
    cause = "success" if success else "code" if status.code is not None else "signal"
    return success, cause, number in config.restart_prevent_exit_status


def restarts(config: ServiceConfig, success: bool, cause: str, prevented: bool) -> bool:
    """Whether `config.restart` restarts after a run that ended so."""
    if success:
        cause = "success"
    elif cause == "success":
        cause = "code"  # a failure whose cause went unrecorded: the plainest kind
    return cause in RESTARTS_AFTER[config.restart] and not prevented
