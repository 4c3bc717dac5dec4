"""Tool schema pinning (practice 16): ``tools.lock`` holds a hash of each pinned server's tools.

A server's hash covers, per tool, its name, description, input schema and declared permissions,
so a changed argument, a dropped permission or a renamed tool is drift. ``keel tools lock``
rewrites the file on purpose; the gateway refuses a server whose hash differs from it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

LOCK_VERSION = 1


def tool_hash(tool: dict[str, Any]) -> str:
    """The sha256 of one tool's canonical JSON (name, description, input schema, permissions)."""
    canon = json.dumps(tool, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canon.encode()).hexdigest()


def server_entry(server: str, version: str, tools: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The lock entry of one pinned server."""
    per_tool = {name: tool_hash(t) for name, t in sorted(tools.items())}
    whole = hashlib.sha256(json.dumps(per_tool, sort_keys=True).encode()).hexdigest()
    return {"server": server, "version": version, "sha256": whole, "tools": per_tool}


def read_lock(path: Path) -> dict[str, Any]:
    """The pinned entries of ``path`` (empty when the file does not exist)."""
    if not path.exists():
        return {}
    data: dict[str, Any] = json.loads(path.read_text())
    servers: dict[str, Any] = data.get("servers", {})
    return servers


def write_lock(path: Path, entries: dict[str, dict[str, Any]]) -> None:
    """Write ``entries`` as the lock file (stable order, so diffs are reviewable)."""
    body = {"version": LOCK_VERSION, "servers": dict(sorted(entries.items()))}
    path.write_text(json.dumps(body, indent=2, sort_keys=True) + "\n")


def drift(pin: str, locked: dict[str, Any] | None, served: dict[str, Any]) -> str | None:
    """A message naming the drift between the lock and what the server serves, or ``None``."""
    if locked is None:
        return f"{pin}: not in tools.lock; run `keel tools lock` to pin its tool schemas"
    if locked.get("version") != served["version"]:
        return (
            f"{pin}: tools.lock pins version {locked.get('version')}"
            f" but the server reports {served['version']}"
        )
    if locked.get("sha256") == served["sha256"]:
        return None
    old, new = locked.get("tools", {}), served["tools"]
    parts = [f"tool {n!r} added" for n in sorted(set(new) - set(old))]
    parts += [f"tool {n!r} removed" for n in sorted(set(old) - set(new))]
    parts += [
        f"tool {n!r} schema changed (lock {old[n][:12]}, served {new[n][:12]})"
        for n in sorted(set(old) & set(new))
        if old[n] != new[n]
    ]
    return (
        f"{pin}: tool schema drift: {'; '.join(parts) or 'hash differs'};"
        " run `keel tools lock` if the change is intended"
    )
