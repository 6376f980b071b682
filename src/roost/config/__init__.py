"""Configuration: a directory of TOML files, one per service."""
