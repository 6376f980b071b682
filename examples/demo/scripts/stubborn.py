"""Ignore SIGTERM: only SIGKILL ends this one."""
import signal
import time

signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("stubborn: ignoring SIGTERM", flush=True)
while True:
    time.sleep(3600)
