"""Start, complain, crash."""
import sys
import time

print("flaky: starting", flush=True)
time.sleep(1)
print("flaky: lost the connection, exiting 3", flush=True)
sys.exit(3)
