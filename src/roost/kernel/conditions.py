"""The file tests of a service's conditions (core/conditions.py says how they combine)."""

from __future__ import annotations

import os
import stat


def test(kind: str, path: str) -> bool:
    """Whether `path` passes the test `kind` (one of core.conditions.KINDS) now."""
    if kind == "path_exists_glob":
        import glob  # noqa: PLC0415 - lazy (memory): services with a glob condition only

        return bool(glob.glob(path))
    try:
        st = os.stat(path)  # systemd follows symlinks for every one of these
    except (OSError, ValueError):
        return False
    if kind == "path_is_directory":
        return stat.S_ISDIR(st.st_mode)
    if kind == "file_not_empty":
        return stat.S_ISREG(st.st_mode) and st.st_size > 0
    if kind == "file_is_executable":
        return stat.S_ISREG(st.st_mode) and bool(st.st_mode & 0o111)
    return True  # path_exists
