"""The edge: every system call roost makes, behind functions a test can replace."""
