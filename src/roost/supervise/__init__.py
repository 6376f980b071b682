"""Supervision: services as processes, driven by the pure core; `roost up`."""
