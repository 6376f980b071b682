"""Configuration: a directory of TOML files, one per service."""

# Where a roost started without -c (and without $ROOST_CONFIG) reads its configuration.
DEFAULT_DIRECTORY = "/etc/roost"
