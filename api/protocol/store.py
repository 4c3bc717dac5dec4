"""Agent Protocol store: ``/store/items`` on the caller's long-term memory (encrypted, scoped).

The store has one namespace, ``["profile"]``: its items are the fields of the caller's
long-term memory profile (memory/long_term.py), an item's value is ``{"value": text}``. The
profile's owner is the token's tenant and user, never the request, so a caller only ever
reaches its own profile; every route needs the scope ``memory:long_term`` (403 otherwise),
and what is stored is sealed with the tenant's key like any profile. A put or delete reads,
changes and writes the whole profile: two writes of one user at the same moment may lose
one of them. The profile keeps no per-field times, so items carry none (``null``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from api.deps import CurrentIdentity, Services, Svc
from core.errors import Invalid, NotFound, Unavailable
from core.identity import Identity
from memory.long_term import LongTermMemory, Profile, require_scope

router = APIRouter(tags=["agent protocol: store"])
NAMESPACE = ["profile"]


def _memory(svc: Services, identity: Identity) -> LongTermMemory:
    require_scope(identity)
    if svc.memory is None or svc.memory.long_term is None:
        raise Unavailable("long-term memory is not configured")
    return svc.memory.long_term


def _item(key: str, text: str) -> dict[str, Any]:
    return {
        "namespace": NAMESPACE,
        "key": key,
        "value": {"value": text},
        "created_at": None,
        "updated_at": None,
    }


def _check_namespace(namespace: list[str]) -> None:
    if namespace != NAMESPACE:
        raise Invalid(f"the store has one namespace, {NAMESPACE} (the caller's profile)")


class ItemPut(BaseModel):
    """Body of ``PUT /store/items``."""

    model_config = ConfigDict(extra="ignore")

    namespace: list[str]
    key: str
    value: dict[str, Any]


@router.put("/store/items", status_code=204)
async def put_item(body: ItemPut, svc: Svc, identity: CurrentIdentity) -> Response:
    """Set one field of the caller's profile; the value must be ``{"value": text}``."""
    memory = _memory(svc, identity)
    _check_namespace(body.namespace)
    text = body.value.get("value")
    if set(body.value) != {"value"} or not isinstance(text, str):
        raise Invalid('a profile item\'s value is {"value": "<text>"}')
    fields = (await memory.get(identity)).fields
    try:
        profile = Profile(fields={**fields, body.key: text})
    except ValidationError as exc:
        raise Invalid(f"the item is not acceptable: {exc.errors()[0]['msg']}") from None
    await memory.put(identity, profile)
    return Response(status_code=204)


@router.get("/store/items")
async def get_item(
    svc: Svc,
    identity: CurrentIdentity,
    key: str,
    namespace: Annotated[str, Query()] = "",
) -> dict[str, Any]:
    """One field of the caller's profile (``namespace=profile``)."""
    memory = _memory(svc, identity)
    fields = (await memory.get(identity)).fields
    if namespace.split(".") != NAMESPACE or key not in fields:
        raise NotFound(f"item {key!r} not found")
    return _item(key, fields[key])


class ItemRef(BaseModel):
    """Body of ``DELETE /store/items``."""

    model_config = ConfigDict(extra="ignore")

    namespace: list[str]
    key: str


@router.delete("/store/items", status_code=204)
async def delete_item(body: ItemRef, svc: Svc, identity: CurrentIdentity) -> Response:
    """Remove one field of the caller's profile (204 whether or not it was there)."""
    memory = _memory(svc, identity)
    _check_namespace(body.namespace)
    fields = dict((await memory.get(identity)).fields)
    if fields.pop(body.key, None) is not None:
        await memory.put(identity, Profile(fields=fields))
    return Response(status_code=204)


class ItemSearch(BaseModel):
    """Body of ``POST /store/items/search``."""

    model_config = ConfigDict(extra="ignore")

    namespace_prefix: list[str] = Field(default_factory=list)
    filter: dict[str, Any] | None = None
    query: str | None = None
    limit: int = Field(default=10, ge=1, le=1000)
    offset: int = Field(default=0, ge=0)


@router.post("/store/items/search")
async def search_items(body: ItemSearch, svc: Svc, identity: CurrentIdentity) -> dict[str, Any]:
    """The caller's profile fields under the prefix, matching ``filter`` and ``query``.

    ``query`` matches as a case-insensitive substring of the key or the text (the profile
    is not embedded, so there is no similarity score).
    """
    memory = _memory(svc, identity)
    if NAMESPACE[: len(body.namespace_prefix)] != body.namespace_prefix:
        return {"items": []}
    items = [_item(k, v) for k, v in sorted((await memory.get(identity)).fields.items())]
    wanted = body.filter or {}
    needle = (body.query or "").lower()
    items = [
        i
        for i in items
        if all(i["value"].get(k) == v for k, v in wanted.items())
        and (needle in i["key"].lower() or needle in i["value"]["value"].lower())
    ]
    return {"items": items[body.offset : body.offset + body.limit]}


class NamespaceSearch(BaseModel):
    """Body of ``POST /store/namespaces``."""

    model_config = ConfigDict(extra="ignore")

    prefix: list[str] | None = None
    suffix: list[str] | None = None
    max_depth: int | None = None


@router.post("/store/namespaces")
async def list_namespaces(
    body: NamespaceSearch, svc: Svc, identity: CurrentIdentity
) -> dict[str, Any]:
    """The caller's namespaces: ``["profile"]`` once it holds a field."""
    memory = _memory(svc, identity)
    held = bool((await memory.get(identity)).fields)
    prefix, suffix = body.prefix or [], body.suffix or []
    fits = NAMESPACE[: len(prefix)] == prefix and (
        not suffix or NAMESPACE[-len(suffix) :] == suffix
    )
    return {"namespaces": [NAMESPACE] if held and fits else []}
