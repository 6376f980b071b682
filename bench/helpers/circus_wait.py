"""Wait until circusd reports N watchers active (runs in the bench venv, which has circus).

Usage: python circus_wait.py ENDPOINT N TIMEOUT_S INTERVAL_S PREFIX
Prints "armed" once its imports are done and it is polling, then "up <monotonic s>"
when N watchers whose names start with PREFIX are "active", or "timeout <last count>".
Started before circusd so that its own ~0.3 s of imports is not counted.
"""

import sys
import time

from circus.client import CircusClient
from circus.exc import CallError


def main() -> int:
    endpoint, n, timeout, interval, prefix = sys.argv[1:6]
    want, deadline = int(n), time.monotonic() + float(timeout)
    client = CircusClient(endpoint=endpoint, timeout=1.0)
    print("armed", flush=True)
    active = 0
    while time.monotonic() < deadline:
        try:
            reply = client.call({"command": "status", "properties": {}})
        except CallError:
            reply = {}
        statuses = reply.get("statuses", {}) if isinstance(reply, dict) else {}
        active = sum(1 for k, v in statuses.items() if k.startswith(prefix) and v == "active")
        if active >= want:
            print(f"up {time.monotonic():.6f}", flush=True)
            client.stop()
            return 0
        time.sleep(float(interval))
    print(f"timeout {active}", flush=True)
    client.stop()
    return 1


if __name__ == "__main__":
    sys.exit(main())
