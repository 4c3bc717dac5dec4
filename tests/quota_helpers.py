"""Quota test helpers: tight tier limits, unique key prefixes, Redis reachability."""

from __future__ import annotations

import socket
import uuid
from typing import Any

import pytest

REDIS_URL = "redis://127.0.0.1:6379/15"


def redis_up() -> bool:
    """Whether a Redis server answers on 127.0.0.1:6379."""
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def storage_url(kind: str) -> str:
    """The storage URL for ``kind`` (memory or redis); skips when Redis is unreachable."""
    if kind == "redis":
        if not redis_up():
            pytest.skip("Redis is not reachable on 127.0.0.1:6379")
        return REDIS_URL
    return "memory://"


def quota_settings(kind: str, **tier: Any) -> dict[str, Any]:
    """A ``quotas`` settings section with one shape for every tier and a fresh key prefix."""
    limits = {
        "runs_per_minute": 1000,
        "tool_calls_per_minute": 1000,
        "concurrent_runs": 50,
        "max_run_duration_s": 60.0,
        "llm_tokens_per_day": 10**8,
        "policy": "reject",
        "max_queued": 10,
        **tier,
    }
    return {
        "storage_url": storage_url(kind),
        "key_prefix": f"t{uuid.uuid4().hex[:10]}",
        "free": limits,
        "pro": {**limits, "policy": "queue"},
        "enterprise": limits,
    }
