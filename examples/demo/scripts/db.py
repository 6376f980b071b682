"""Pretend to load a database, then signal readiness with a newline on fd 3."""
import os
import signal
import sys
import time

signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
print("db: loading tables...", flush=True)
time.sleep(1.0)
print("db: ready, accepting connections", flush=True)
os.write(3, b"\n")
os.close(3)
while True:
    time.sleep(3600)
