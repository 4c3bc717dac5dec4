"""Files a tool produced (practice 9): stored per user, served only to that user by the API.

An artifact lives in ``<root>/<tenant>/<user>/<id>.<ext>`` (both folder names hashed), with an
unguessable id; another user of the same tenant gets 404 for it as for any unknown id.
``keel prune`` removes artifacts older than ``retention.days`` (``prune``).
"""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path

_ID = re.compile(r"^[0-9a-f]{32}\.(png|csv)$")
MIMES = {"png": "image/png", "csv": "text/csv"}


class ArtifactStore:
    """A directory of ``<tenant>/<user>/<id>.<ext>`` files with unguessable ids."""

    def __init__(self, root: Path) -> None:
        """Store under ``root``."""
        self.root = root

    def save(self, tenant: str, user: str, data: bytes, ext: str = "png") -> str:
        """Write ``data`` for ``user`` of ``tenant``; returns the artifact id (``<hex>.<ext>``)."""
        if ext not in MIMES:
            raise ValueError(f"unsupported artifact type {ext!r}")
        artifact_id = f"{uuid.uuid4().hex}.{ext}"
        folder = self.root / _dir("tenant", tenant) / _dir("user", user)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / artifact_id).write_bytes(data)
        return artifact_id

    def path(self, tenant: str, user: str, artifact_id: str) -> Path | None:
        """The file of ``artifact_id`` if it exists and belongs to ``user`` of ``tenant``."""
        if not _ID.match(artifact_id):
            return None
        p = self.root / _dir("tenant", tenant) / _dir("user", user) / artifact_id
        return p if p.is_file() else None

    def prune(self, older_than_days: float) -> int:
        """Delete artifacts written more than ``older_than_days`` ago; returns how many."""
        cutoff = time.time() - older_than_days * 86_400
        removed = 0
        for p in self.root.glob("*/*/*"):
            if _ID.match(p.name) and p.is_file() and p.stat().st_mtime < cutoff:
                p.unlink(missing_ok=True)
                removed += 1
        return removed


def mime_of(artifact_id: str) -> str:
    """The MIME type of an artifact id."""
    return MIMES[artifact_id.rsplit(".", 1)[1]]


def content_matches(mime: str, head: bytes) -> bool:
    """Whether the first bytes of a file fit ``mime``: the PNG signature, or NUL-free UTF-8 text."""
    if mime == "image/png":
        return head.startswith(b"\x89PNG\r\n\x1a\n")
    if mime == "text/csv":
        try:
            head.decode()
        except UnicodeDecodeError as exc:
            if exc.start < len(head) - 3:
                return False
        return b"\x00" not in head
    return False


def _dir(kind: str, name: str) -> str:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"keel-{kind}:{name}").hex
