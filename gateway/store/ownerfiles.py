"""Files the gateway creates for its record (the store, the alarm journal) are owner-only.

The store and the journal hold a site's measurements and its operators' commands. Under systemd the
unit's `UMask=0077` keeps them private; started any other way, SQLite created them with mode 0644 (and
the `-wal`/`-shm` files after them). `create_owner_only` makes the file empty with mode 0600 before
SQLite opens it, which SQLite then gives its `-wal`, `-shm` and `-journal` files too, and makes a missing
directory 0700. An existing file keeps its mode: a site may have chosen it.
"""

from __future__ import annotations

import os
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def create_owner_only(path: Path) -> None:
    """The directory of `path` (each missing level 0700) and, when missing, `path` itself, empty, mode 0600."""
    missing: list[Path] = []
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        missing.append(parent)
        parent = parent.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=DIR_MODE)
        except FileExistsError:  # made meanwhile by another process: fine
            pass
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    except FileExistsError:
        return
    os.close(fd)
