"""Trending repositories from the live GitHub search API, else the shipped snapshot (practice 16).

Both server versions use this module; each says which source answered (``live`` or
``snapshot``) so that an offline answer is never passed off as live data.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

SNAPSHOT = Path(__file__).with_name("snapshot.json")
_PERIOD_DAYS = {"daily": 1, "weekly": 7, "monthly": 30}


def _live(language: str, since: str, limit: int) -> list[dict[str, Any]]:
    api = os.environ.get("KEEL_GITHUB_API", "https://api.github.com").rstrip("/")
    token = os.environ.get("KEEL_GITHUB_TOKEN")
    day = (datetime.now(UTC) - timedelta(days=_PERIOD_DAYS.get(since, 7))).date().isoformat()
    headers = {"Accept": "application/vnd.github+json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    r = httpx.get(
        f"{api}/search/repositories",
        params={
            "q": f"language:{language} created:>{day}",
            "sort": "stars",
            "order": "desc",
            "per_page": str(limit),
        },
        headers=headers,
        timeout=float(os.environ.get("KEEL_GITHUB_TIMEOUT_S", "3")),
    )
    r.raise_for_status()
    return [
        {
            "full_name": it["full_name"],
            "description": it.get("description") or "",
            "url": it["html_url"],
            "language": it.get("language") or language,
            "stars": int(it.get("stargazers_count", 0)),
            "forks": int(it.get("forks_count", 0)),
        }
        for it in r.json().get("items", [])[:limit]
    ]


def trending(language: str, since: str = "weekly", limit: int = 5) -> dict[str, Any]:
    """Repositories for ``language``: ``{"source", "note", "repos"}``."""
    lang = language.strip().lower() or "python"
    try:
        return {"source": "live", "note": "GitHub search API", "repos": _live(lang, since, limit)}
    except (httpx.HTTPError, KeyError, ValueError) as exc:
        snap = json.loads(SNAPSHOT.read_text())
        repos = snap["languages"].get(lang, [])[:limit]
        why = type(exc).__name__
        note = f"{snap['note']} Taken {snap['snapshot_date']} (live API unreachable: {why})."
        return {"source": "snapshot", "note": note, "repos": repos}
