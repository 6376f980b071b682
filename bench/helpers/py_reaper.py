"""The least a Python PID 1 can do: run ARGV, reap everything, exit with its status.

The orphan-storm scenario runs this beside roost as a floor: the gap between it and
tini is the interpreter's own cost per reaped child; the gap between roost and it is
roost's.
"""

import os
import signal
import sys

signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
main = os.fork()
if main == 0:
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
    os.execv(sys.argv[1], sys.argv[1:])
code = None
while code is None:
    signal.sigwaitinfo({signal.SIGCHLD})
    while True:
        try:
            result = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG)
        except ChildProcessError:
            code = code if code is not None else 1
            break
        if result is None:
            break
        if result.si_pid == main:
            code = result.si_status if result.si_code == os.CLD_EXITED else 128 + result.si_status
sys.exit(code)
