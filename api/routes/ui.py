"""The browser UI (web/, built by ``make web`` into web/dist) and its dev-only sign-in.

``GET /`` serves the built single-page app and ``/assets/*`` its hashed bundles. The UI talks
to the same ``/v1`` API as any client, with a bearer token kept in the browser. If the bundle
was not built, ``/`` answers 503 problem+json naming the command that builds it.

Dev sign-in (``GET /v1/dev/users``, ``POST /v1/dev/token``) mints tokens for a few fixed dev
users, and only where ``env`` is ``dev`` and ``auth.dev_tokens`` is on; anywhere else both
routes are 404, as if they did not exist.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from fastapi import APIRouter
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict

from api.deps import Svc
from core.errors import NotFound, Unavailable
from core.identity import issue_token

DIST = Path(__file__).resolve().parents[2] / "web" / "dist"

router = APIRouter(tags=["ui"])


class DevUser(BaseModel):
    """A user the dev sign-in can mint a token for."""

    user: str
    tenant: str
    tier: Literal["free", "pro", "enterprise"]
    scopes: list[str]


DEV_USERS = [
    DevUser(
        user="alice",
        tenant="default",
        tier="pro",
        scopes=[
            "exec:code",
            "read:calendar",
            "write:calendar",
            "read:documents",
            "write:documents",
        ],
    ),
    DevUser(user="bob", tenant="default", tier="free", scopes=["read:documents"]),
]


class DevTokenIn(BaseModel):
    """Which dev user to sign in as."""

    model_config = ConfigDict(extra="forbid")
    user: str


class DevTokenOut(BaseModel):
    """A bearer token for the dev user."""

    token: str


def _dev_only(svc: Svc) -> None:
    if svc.settings.env != "dev" or not svc.settings.auth.dev_tokens:
        raise NotFound("not found")


@router.get("/v1/dev/users", response_model=list[DevUser])
async def dev_users(svc: Svc) -> list[DevUser]:
    """The dev users (dev config only)."""
    _dev_only(svc)
    return DEV_USERS


@router.post("/v1/dev/token", response_model=DevTokenOut)
async def dev_token(body: DevTokenIn, svc: Svc) -> DevTokenOut:
    """A token for one of the dev users (dev config only)."""
    _dev_only(svc)
    user = next((u for u in DEV_USERS if u.user == body.user), None)
    if user is None:
        raise NotFound(f"no dev user {body.user!r}")
    token = issue_token(
        svc.settings.auth, user=user.user, tenant=user.tenant, scopes=user.scopes, tier=user.tier
    )
    return DevTokenOut(token=token)


@router.get("/", include_in_schema=False)
async def index() -> FileResponse:
    """The single-page app."""
    page = DIST / "index.html"
    if not page.is_file():
        raise Unavailable("the web UI is not built: run `make web`")
    return FileResponse(page, headers={"Cache-Control": "no-cache"})


@router.get("/assets/{name}", include_in_schema=False)
async def asset(name: str) -> FileResponse:
    """A hashed bundle of the app (cached for good: its name changes with its content)."""
    path = (DIST / "assets" / name).resolve()
    if path.parent != (DIST / "assets").resolve() or not path.is_file():
        raise NotFound(f"no asset {name!r}")
    return FileResponse(path, headers={"Cache-Control": "public, max-age=31536000, immutable"})
