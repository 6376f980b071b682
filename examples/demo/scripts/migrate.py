"""Apply schema migrations once, then exit 0."""
import time

for step in ("create users", "add index", "backfill"):
    print(f"migrate: {step}", flush=True)
    time.sleep(0.2)
print("migrate: done", flush=True)
