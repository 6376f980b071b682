"""`roost run`: PID 1 of a container."""
