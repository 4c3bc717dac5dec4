"""Long-term memory over HTTP: the caller sees, edits, exports and deletes its own profile.

Every route needs the scope ``memory:long_term`` (403 problem+json otherwise) and reaches only
the caller's own row: the tenant and user come from the verified token, never from the request.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from fastapi import APIRouter, Response

from api.deps import CurrentIdentity, Svc
from core.errors import Unavailable
from memory.long_term import LongTermMemory, Profile, require_scope

router = APIRouter(prefix="/v1/memory", tags=["memory"])


def _store(svc: Svc) -> LongTermMemory:
    if svc.memory is None or svc.memory.long_term is None:
        raise Unavailable("long-term memory is not configured")
    return svc.memory.long_term


@router.get("/long-term", response_model=Profile)
async def get_long_term(svc: Svc, identity: CurrentIdentity) -> Profile:
    """The caller's profile and preferences."""
    require_scope(identity)
    return await _store(svc).get(identity)


@router.put("/long-term", response_model=Profile)
async def put_long_term(svc: Svc, identity: CurrentIdentity, body: Profile) -> Profile:
    """Replace the caller's profile."""
    require_scope(identity)
    return await _store(svc).put(identity, body)


@router.delete("/long-term", status_code=204)
async def delete_long_term(svc: Svc, identity: CurrentIdentity) -> Response:
    """Delete the caller's profile (204 whether or not there was one)."""
    require_scope(identity)
    await _store(svc).delete(identity)
    return Response(status_code=204)


@router.get("/long-term/export")
async def export_long_term(svc: Svc, identity: CurrentIdentity) -> Response:
    """The caller's profile as a downloadable JSON document."""
    require_scope(identity)
    profile = await _store(svc).get(identity)
    doc = {
        "user_id": identity.user_id,
        "tenant": identity.tenant,
        "exported_at": datetime.now(UTC).isoformat(),
        "profile": profile.model_dump(),
    }
    return Response(
        json.dumps(doc, indent=2),
        media_type="application/json",
        headers={"Content-Disposition": 'attachment; filename="keel-memory.json"'},
    )
