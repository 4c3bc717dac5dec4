"""``GET /v1/usage``: the caller's current usage against its tier's limits."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel

from api.deps import CurrentIdentity, Svc
from core.settings import TierLimits

router = APIRouter(prefix="/v1", tags=["usage"])


class UsageNow(BaseModel):
    """What the caller has used in the current windows."""

    runs_last_minute: int
    tool_calls_last_minute: int
    concurrent_runs: int
    queued_runs: int
    llm_tokens_today: int


class UsageOut(BaseModel):
    """The caller's usage and limits; ``subject`` is whose quota it is (user or API key)."""

    subject: str
    user: str
    tenant: str
    scopes: list[str]
    tier: Literal["free", "pro", "enterprise"]
    limits: TierLimits
    usage: UsageNow


@router.get("/usage", response_model=UsageOut)
async def get_usage(svc: Svc, identity: CurrentIdentity) -> UsageOut:
    """The caller's usage now and the limits of its tier."""
    u = await svc.quotas.usage(identity)
    return UsageOut(
        subject=u.subject,
        user=identity.user_id,
        tenant=identity.tenant,
        scopes=sorted(identity.scopes),
        tier=identity.tier,
        limits=u.limits,
        usage=UsageNow(
            runs_last_minute=u.runs_last_minute,
            tool_calls_last_minute=u.tool_calls_last_minute,
            concurrent_runs=u.concurrent_runs,
            queued_runs=svc.scheduler.queued(u.subject),
            llm_tokens_today=u.llm_tokens_today,
        ),
    )
