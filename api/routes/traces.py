"""Request tracing (practice 1): a trace's runs as a timeline, built from the event log.

``GET /v1/traces/{trace_id}`` returns, per run of the trace, its events and the spans derived
from them: the run, each node phase (from one ``agent_status`` to the next), and each tool call
(``tool_call`` to its ``tool_result`` or ``tool_error``), with start, duration and status, so a
slow node or tool is visible at a glance. Only the caller's own runs are shown.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.responses import FileResponse
from pydantic import BaseModel

from api.deps import CurrentIdentity, Svc
from api.routes.ui import DIST
from core.errors import Unavailable

router = APIRouter(prefix="/v1", tags=["traces"])


class SpanOut(BaseModel):
    """One interval of a run."""

    kind: str
    name: str
    start: datetime
    duration_ms: float
    status: str


class RunTimeline(BaseModel):
    """A run of the trace: its spans and events."""

    run_id: str
    thread_id: str
    status: str
    spans: list[SpanOut]
    events: list[dict[str, Any]]


class TraceOut(BaseModel):
    """Everything recorded under one trace_id."""

    trace_id: str
    runs: list[RunTimeline]


def _ts(ev: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(str(ev["ts"]).replace("Z", "+00:00"))


def _ms(a: datetime, b: datetime) -> float:
    return round((b - a).total_seconds() * 1000, 1)


def timeline(events: list[dict[str, Any]]) -> list[SpanOut]:
    """Spans of one run's events (ordered by seq)."""
    if not events:
        return []
    spans: list[SpanOut] = []
    first, last = events[0], events[-1]
    finished = last["data"].get("status", "running") if last["type"] == "run_finished" else None
    spans.append(
        SpanOut(
            kind="run",
            name="run",
            start=_ts(first),
            duration_ms=_ms(_ts(first), _ts(last)),
            status=finished or "running",
        )
    )
    phase: dict[str, Any] | None = None
    calls: dict[str, dict[str, Any]] = {}
    for ev in events:
        if ev["type"] == "agent_status" or ev["type"] == "run_finished":
            if phase is not None:
                spans.append(
                    SpanOut(
                        kind="node",
                        name=f"{phase['node'] or 'run'}: {phase['data']['status']}",
                        start=_ts(phase),
                        duration_ms=_ms(_ts(phase), _ts(ev)),
                        status="ok",
                    )
                )
            phase = ev if ev["type"] == "agent_status" and ev.get("node") else None
        elif ev["type"] == "tool_call":
            calls[ev["data"]["call_id"]] = ev
        elif ev["type"] in ("tool_result", "tool_error"):
            call = calls.pop(ev["data"].get("call_id") or "", None)
            if call is not None:
                spans.append(
                    SpanOut(
                        kind="tool",
                        name=str(call["data"]["tool_name"]),
                        start=_ts(call),
                        duration_ms=_ms(_ts(call), _ts(ev)),
                        status="ok" if ev["type"] == "tool_result" else str(ev["data"]["code"]),
                    )
                )
    return spans


@router.get("/traces/{trace_id}", response_model=TraceOut)
async def get_trace(
    trace_id: Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")], svc: Svc, identity: CurrentIdentity
) -> TraceOut:
    """The caller's runs recorded under ``trace_id``, as timelines."""
    out = []
    for run in await svc.store.runs_of_trace(identity, trace_id):
        events = await svc.event_log.read(run["thread_id"], 0, run["run_id"])
        out.append(
            RunTimeline(
                run_id=run["run_id"],
                thread_id=run["thread_id"],
                status=run["status"],
                spans=timeline(events),
                events=events,
            )
        )
    return TraceOut(trace_id=trace_id, runs=out)


page = APIRouter(tags=["traces"])


@page.get("/traces/{trace_id}", include_in_schema=False)
async def trace_page(trace_id: Annotated[str, Path(pattern="^[0-9a-f]{32}$")]) -> FileResponse:
    """The trace as a waterfall, drawn by the web UI (web/trace.html) from ``GET /v1/traces/{id}``.

    The page uses the UI's sign-in (the bearer token in the browser's localStorage).
    """
    built = DIST / "trace.html"
    if not built.is_file():
        raise Unavailable("the web UI is not built: run `make web`")
    return FileResponse(built, headers={"Cache-Control": "no-cache"})
