"""Agent Protocol assistants: one per configured agent, read-only, versioned by configuration.

An assistant's id is derived from its agent's name (``wire.assistant_id``); clients may also
name it by the agent (its ``graph_id``), as LangGraph clients commonly do. Its ``config``
is the agent's pinned tools, variants and routing; each configuration the agent is served
with gets the next version number the first time (``RunStore.assistant_versions``), so a
changed ``agents:`` entry shows as a new version. Assistants are configuration, not data:
creating, patching or deleting one over HTTP is not offered (405).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from api.deps import CurrentIdentity, Services, Svc
from api.protocol.wire import assistant_id
from core.errors import NotFound

router = APIRouter(tags=["agent protocol: assistants"])


def resolve(svc: Services, assistant: str) -> str:
    """The agent an assistant id (or agent name) names.

    Raises:
        NotFound: no configured agent has that id or name.
    """
    for name in svc.settings.agents:
        if assistant in (name, assistant_id(name)):
            return name
    raise NotFound(f"assistant {assistant} not found")


async def _versions(svc: Services, agent: str) -> list[dict[str, Any]]:
    """The agent's assistant versions, newest first, its current configuration recorded."""
    config = {"configurable": svc.settings.agents[agent].model_dump(mode="json")}
    rows = await svc.store.assistant_versions(agent, config)
    return [
        {
            "assistant_id": assistant_id(agent),
            "graph_id": agent,
            "name": agent,
            "description": None,
            "config": row["config"],
            "context": {},
            "metadata": {"created_by": "system", "current": row["config"] == config},
            "version": row["version"],
            "created_at": row["created_at"].isoformat(),
        }
        for row in rows
    ]


async def _assistant(svc: Services, agent: str) -> dict[str, Any]:
    """The assistant of ``agent`` at its current configuration's version."""
    versions = await _versions(svc, agent)
    current = next(v for v in versions if v["metadata"]["current"])
    return {
        **current,
        "metadata": {"created_by": "system"},
        "created_at": versions[-1]["created_at"],
        "updated_at": current["created_at"],
    }


class AssistantSearch(BaseModel):
    """Body of ``POST /assistants/search`` (and ``/count``)."""

    model_config = ConfigDict(extra="ignore")

    graph_id: str | None = None
    name: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    limit: int = Field(default=10, ge=1, le=1000)
    offset: int = Field(default=0, ge=0)


async def _matching(svc: Services, body: AssistantSearch) -> list[dict[str, Any]]:
    found = [await _assistant(svc, agent) for agent in svc.settings.agents]
    return [
        a
        for a in found
        if body.graph_id in (None, a["graph_id"])
        and (body.name is None or body.name in a["name"])
        and all(a["metadata"].get(k) == v for k, v in body.metadata.items())
    ]


@router.get("/info")
async def info() -> dict[str, Any]:
    """What this Agent Protocol server offers (clients such as Agent Chat UI probe it first)."""
    return {
        "version": "keel",
        "flags": {"assistants": True, "crons": False, "langsmith": False, "store": True},
    }


@router.post("/assistants/search")
async def search_assistants(
    body: AssistantSearch, svc: Svc, _: CurrentIdentity
) -> list[dict[str, Any]]:
    """The assistants matching the filters."""
    return (await _matching(svc, body))[body.offset : body.offset + body.limit]


@router.post("/assistants/count")
async def count_assistants(body: AssistantSearch, svc: Svc, _: CurrentIdentity) -> int:
    """How many assistants match the filters."""
    return len(await _matching(svc, body))


@router.get("/assistants/{assistant}")
async def get_assistant(assistant: str, svc: Svc, _: CurrentIdentity) -> dict[str, Any]:
    """One assistant, by id or agent name."""
    return await _assistant(svc, resolve(svc, assistant))


class VersionSearch(BaseModel):
    """Body of ``POST /assistants/{assistant}/versions``."""

    model_config = ConfigDict(extra="ignore")

    limit: int = Field(default=10, ge=1, le=1000)
    offset: int = Field(default=0, ge=0)


@router.post("/assistants/{assistant}/versions")
async def get_assistant_versions(
    assistant: str, body: VersionSearch, svc: Svc, _: CurrentIdentity
) -> list[dict[str, Any]]:
    """The assistant's versions, newest first: one per configuration its agent has had."""
    versions = await _versions(svc, resolve(svc, assistant))
    return versions[body.offset : body.offset + body.limit]


@router.get("/assistants/{assistant}/graph")
async def get_assistant_graph(
    assistant: str,
    svc: Svc,
    _: CurrentIdentity,
    xray: Annotated[int | bool, Query()] = False,
) -> dict[str, Any]:
    """The assistant's graph: its nodes and edges, as LangGraph draws them."""
    resolve(svc, assistant)
    graph: dict[str, Any] = svc.graph.get_graph(xray=xray).to_json()
    return graph


def _schema(make: Any) -> dict[str, Any] | None:
    try:
        schema: dict[str, Any] | None = make()
    except Exception:  # a schema the graph cannot describe is reported missing, as LangGraph does
        return None
    return schema


@router.get("/assistants/{assistant}/schemas")
async def get_assistant_schemas(assistant: str, svc: Svc, _: CurrentIdentity) -> dict[str, Any]:
    """The JSON Schemas of the assistant's input, output, state and context."""
    agent = resolve(svc, assistant)
    graph = svc.graph
    return {
        "graph_id": agent,
        "input_schema": _schema(graph.get_input_jsonschema),
        "output_schema": _schema(graph.get_output_jsonschema),
        "state_schema": _schema(graph.get_output_jsonschema),
        "config_schema": None,
        "context_schema": _schema(graph.get_context_jsonschema),
    }


@router.get("/assistants/{assistant}/subgraphs")
async def get_assistant_subgraphs(assistant: str, svc: Svc, _: CurrentIdentity) -> dict[str, Any]:
    """The assistant's subgraphs: none (the research graph has no subgraphs)."""
    resolve(svc, assistant)
    return {}
