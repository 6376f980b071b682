"""Do a unit of work every few seconds."""
import itertools
import signal
import sys
import time

signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
for n in itertools.count(1):
    print(f"worker: job {n} done", flush=True)
    time.sleep(3)
