"""The pure core: what a service is, how it moves, and the order between services.

Nothing here makes a system call or imports from outside this package: every
rule is tested with events and a fake clock alone (see docs/DESIGN.md).
"""
