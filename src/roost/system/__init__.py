"""System mode: roost as PID 1 of a machine (boot, power requests, shutdown to a clean root)."""
