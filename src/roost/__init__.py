"""roost: a Linux init and service supervisor."""

__version__ = "0.1.0"
