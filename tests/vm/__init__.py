"""roost on a real Linux kernel under qemu: the harness and its scenarios."""
