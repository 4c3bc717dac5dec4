"""Tools and their artifacts: ``GET /v1/tools`` and ``GET /v1/artifacts/{id}``."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse
from pydantic import BaseModel

from api.deps import CurrentIdentity, Svc
from core.errors import NotFound
from tools.artifacts import content_matches, mime_of

router = APIRouter(prefix="/v1", tags=["tools"])


class ToolOut(BaseModel):
    """One tool of a pinned server."""

    name: str
    qualified_name: str
    server: str
    version: str
    pin: str
    description: str
    permissions: list[str]
    sandbox: bool
    agents: list[str]
    input_schema: dict[str, Any]


class ToolsOut(BaseModel):
    """The pinned tools, and the servers refused at start-up with the reason."""

    tools: list[ToolOut]
    refused: dict[str, str]


@router.get("/tools", response_model=ToolsOut)
async def list_tools(svc: Svc, identity: CurrentIdentity) -> ToolsOut:
    """Servers, versions, tools, permissions and input schemas of every pinned server."""
    agents = svc.settings.agents
    return ToolsOut(
        tools=[
            ToolOut(
                **asdict(t),
                qualified_name=t.qualified,
                agents=sorted(a for a, spec in agents.items() if t.pin in spec.tools),
            )
            for t in svc.tools.tools()
        ],
        refused=svc.tools.refused,
    )


@router.get("/artifacts/{artifact_id}", response_class=FileResponse)
async def get_artifact(artifact_id: str, svc: Svc, identity: CurrentIdentity) -> FileResponse:
    """A file a tool produced in one of the caller's tenant's runs (404 for anyone else).

    Served with ``nosniff``; a file whose bytes do not match its type (a PNG without the PNG
    signature, a CSV that is not text) goes out as an ``application/octet-stream`` attachment.
    """
    path = svc.tools.artifacts.path(identity.tenant, identity.user_id, artifact_id)
    if path is None:
        raise NotFound("artifact not found")
    with path.open("rb") as f:
        head = f.read(4096)
    mime = mime_of(artifact_id)
    if not content_matches(mime, head):
        mime = "application/octet-stream"
    inline = mime == "image/png"
    return FileResponse(
        path,
        media_type=mime,
        filename=artifact_id,
        content_disposition_type="inline" if inline else "attachment",
        headers={"X-Content-Type-Options": "nosniff"},
    )
