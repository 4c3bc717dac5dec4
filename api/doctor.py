"""``keel doctor`` and ``/readyz``: one check per dependency, one line per check.

A check is an async function of the settings returning a ``Check`` (ok or not, with a reason)
or ``None`` when the dependency is not configured here (it is skipped, not failed). ``CHECKS``
is the ordered registry; a new dependency adds one function and one entry. ``keel doctor``
runs them all (starting the tool servers and a sandbox, so it can take seconds); ``/readyz``
runs only the cheap ones against the live process (its pool, quota store and gateway).

Checks never raise: every failure becomes ``Check(ok=False, detail=<reason>)`` so that one
broken dependency does not hide the others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from core.settings import Settings

TIMEOUT_S = 3.0


@dataclass(frozen=True)
class Check:
    """The outcome of one check."""

    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        """``ok   postgres  postgresql://...`` or ``FAIL llm  connection refused``."""
        return f"{'ok  ' if self.ok else 'FAIL'} {self.name:<12} {self.detail}"


CheckFn = Callable[[Settings], Awaitable[Check | None]]


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _redact(url: str) -> str:
    """The URL without its password."""
    parsed = httpx.URL(url) if "://" in url else None
    if parsed is None or not parsed.password:
        return url
    return str(parsed.copy_with(password="***"))


async def check_postgres(settings: Settings) -> Check | None:
    """The configured database answers ``SELECT 1`` (embedded: only if it is running)."""
    from psycopg import AsyncConnection

    from core.db import EmbeddedPostgres

    url = settings.database.url
    if not url:
        url = EmbeddedPostgres.running_url(settings.data_dir / "pg")
        if not url:
            return Check("postgres", True, "embedded (started by keel serve)")
    try:
        conn = await AsyncConnection.connect(url, connect_timeout=int(TIMEOUT_S))
        async with conn:
            await conn.execute("SELECT 1")
    except Exception as exc:
        return Check("postgres", False, f"{_redact(url)}: {_reason(exc)}")
    return Check("postgres", True, _redact(url))


async def check_quota_store(settings: Settings) -> Check | None:
    """Redis answers PING when quotas are stored there; ``memory://`` needs nothing."""
    url = settings.quotas.storage_url
    if not url.startswith(("redis://", "rediss://")):
        return Check("quota_store", True, f"{url} (this process only)")
    import redis.asyncio as aioredis

    client: Any = aioredis.Redis.from_url(
        url, socket_connect_timeout=TIMEOUT_S, socket_timeout=TIMEOUT_S
    )
    try:
        await client.ping()
    except Exception as exc:
        return Check("quota_store", False, f"{_redact(url)}: {_reason(exc)}")
    finally:
        await client.aclose()
    return Check("quota_store", True, _redact(url))


async def check_qdrant(settings: Settings) -> Check | None:
    """A Qdrant server answers ``/readyz``; skipped in local mode (no ``memory.session.url``)."""
    session = settings.memory.session
    url = session.url
    if not session.enabled or not url:
        return None
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT_S) as client:
            r = await client.get(url.rstrip("/") + "/readyz")
    except httpx.HTTPError as exc:
        return Check("qdrant", False, f"{url}: {_reason(exc)}")
    if r.status_code != 200:
        return Check("qdrant", False, f"{url}/readyz answered {r.status_code}")
    return Check("qdrant", True, url)


async def check_llm(settings: Settings) -> Check | None:
    """``GET <base_url>/models`` answers 200 (the local model is started by ``keel serve``)."""
    base = settings.llm.base_url
    if not base:
        if settings.llm.provider == "local":
            return Check("llm", True, f"local model {settings.llm.local.file} (keel serve)")
        return Check("llm", False, "llm.base_url is not set")
    url = base.rstrip("/") + "/models"
    headers = {"Authorization": f"Bearer {settings.llm.api_key}"}
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT_S) as client:
            r = await client.get(url, headers=headers)
    except httpx.HTTPError as exc:
        return Check("llm", False, f"{url}: {_reason(exc)}")
    if r.status_code != 200:
        return Check("llm", False, f"{url} answered {r.status_code}")
    return Check("llm", True, f"{url} (model {settings.llm.model})")


def tools_check(refused: dict[str, str], served: Sequence[str]) -> Check:
    """The outcome of a started gateway: every pinned server serves its locked version."""
    if refused:
        return Check("tools", False, "; ".join(refused.values()))
    return Check("tools", True, f"{len(served)} servers at their pinned versions")


async def check_tools(settings: Settings) -> Check | None:
    """Start the pinned MCP servers through the gateway, checking versions and tools.lock."""
    from tools.gateway import ToolGateway

    if not settings.mcp_servers:
        return None
    gateway = ToolGateway(settings)
    try:
        await gateway.start()
        return tools_check(gateway.refused, list(gateway.lock_entries()))
    except Exception as exc:
        return Check("tools", False, _reason(exc))
    finally:
        await gateway.aclose()


async def check_sandbox(settings: Settings) -> Check | None:
    """A bubblewrap jail starts here (only needed when some server is marked sandbox)."""
    from tools.sandbox import sandbox_available

    if not any(p.sandbox for p in settings.mcp_servers.values()):
        return None
    try:
        ok, why = await asyncio.to_thread(sandbox_available)
    except Exception as exc:
        return Check("sandbox", False, _reason(exc))
    return Check("sandbox", ok, why)


CHECKS: dict[str, CheckFn] = {
    "postgres": check_postgres,
    "quota_store": check_quota_store,
    "qdrant": check_qdrant,
    "llm": check_llm,
    "tools": check_tools,
    "sandbox": check_sandbox,
}


async def run_checks(settings: Settings, names: Sequence[str] | None = None) -> list[Check]:
    """Run the named checks (default: all) concurrently; skipped ones are left out."""
    chosen = [n for n in CHECKS if names is None or n in names]
    unknown = sorted(set(names or ()) - set(CHECKS))
    if unknown:
        raise ValueError(f"unknown checks {unknown}; known: {list(CHECKS)}")

    async def guarded(name: str) -> Check | None:
        try:
            return await CHECKS[name](settings)
        except Exception as exc:
            return Check(name, False, _reason(exc))

    results = await asyncio.gather(*(guarded(n) for n in chosen))
    return [c for c in results if c is not None]
