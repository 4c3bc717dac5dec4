"""``POST /v1/feedback``, ``POST /v1/signals``, ``GET /v1/feedback/summary`` (see runs/feedback)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from api.deps import CurrentIdentity, Svc
from api.text import StorableText
from core.errors import Forbidden
from runs import langsmith_runs
from runs.feedback import Rating, SignalKind

router = APIRouter(prefix="/v1", tags=["feedback"])


class FeedbackIn(BaseModel):
    """A rating of one of the caller's tenant's runs; a second one replaces the first."""

    model_config = ConfigDict(extra="forbid")

    run_id: StorableText = Field(max_length=64)
    rating: Rating
    reason: StorableText | None = Field(default=None, max_length=200)
    comment: StorableText | None = Field(default=None, max_length=4000)


class SignalIn(BaseModel):
    """An implicit signal about a run (``value``: e.g. the dwell time in ms)."""

    model_config = ConfigDict(extra="forbid")

    run_id: StorableText = Field(max_length=64)
    kind: SignalKind
    value: float | None = Field(default=None, ge=0, le=1e9)


class Stored(BaseModel):
    """What was stored, with the run's context copied onto it."""

    run_id: str
    trace_id: str
    thread_id: str
    agent: str
    agent_variant: str | None
    tool_versions: dict[str, str]


@router.post("/feedback", status_code=201, response_model=Stored)
async def post_feedback(body: FeedbackIn, svc: Svc, identity: CurrentIdentity) -> Stored:
    """Rate a run of the caller's tenant (404 for any other run)."""
    run = await svc.executor.feedback.rate(
        identity, body.run_id, body.rating, body.reason, body.comment
    )
    score = 1.0 if body.rating == "thumbs_up" else 0.0
    await langsmith_runs.send_feedback(run.run_id, score, body.comment, identity.user_id)
    return Stored.model_validate(run, from_attributes=True)


@router.post("/signals", status_code=201, response_model=Stored)
async def post_signal(body: SignalIn, svc: Svc, identity: CurrentIdentity) -> Stored:
    """Record an implicit signal about a run of the caller's tenant."""
    run = await svc.executor.feedback.signal(identity, body.run_id, body.kind, body.value)
    return Stored.model_validate(run, from_attributes=True)


@router.get("/feedback/summary")
async def feedback_summary(
    svc: Svc,
    identity: CurrentIdentity,
    days: Annotated[int, Query(ge=1, le=365)] = 30,
) -> dict[str, Any]:
    """Satisfaction and signal counts of the caller's tenant, with 95 % Wilson intervals.

    Grouped by agent variant, model, tool version and day; needs scope ``admin:feedback``.
    """
    if not identity.has_scope("admin:feedback"):
        raise Forbidden("the feedback summary needs scope admin:feedback")
    summary = await svc.executor.feedback.summary(identity.tenant, days)
    return {"tenant": identity.tenant, "days": days, **summary}
