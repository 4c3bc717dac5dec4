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
from fastapi.responses import HTMLResponse
from pydantic import BaseModel

from api.deps import CurrentIdentity, Svc

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

_WATERFALL = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Keel trace</title>
<style>
body{font:14px system-ui,sans-serif;margin:2rem;color:#222}
.row{display:flex;align-items:center;height:22px}
.label{width:260px;overflow:hidden;white-space:nowrap;text-overflow:ellipsis}
.lane{position:relative;flex:1;height:14px;background:#f3f3f3}
.bar{position:absolute;height:14px;background:#4a7bd0}
.bar.tool{background:#d08a2c}.bar.run{background:#888}.bar.error{background:#c33}
.ms{width:90px;text-align:right;color:#666}
</style></head><body>
<h1>Trace <code id="tid"></code></h1>
<p><label>Bearer token <input id="token" size="60"></label> <button id="go">Show</button></p>
<div id="out"></div>
<script>
const tid = location.pathname.split("/").pop();
document.getElementById("tid").textContent = tid;
const tok = document.getElementById("token");
tok.value = localStorage.getItem("keel.token") || "";
async function show() {
  localStorage.setItem("keel.token", tok.value);
  const r = await fetch(`/v1/traces/${tid}`, {headers: {Authorization: `Bearer ${tok.value}`}});
  const out = document.getElementById("out");
  out.textContent = "";
  if (!r.ok) { out.textContent = `${r.status}: ${(await r.json()).detail}`; return; }
  for (const run of (await r.json()).runs) {
    const t0 = Math.min(...run.spans.map(s => Date.parse(s.start)));
    const total = Math.max(1, ...run.spans.map(s => Date.parse(s.start) - t0 + s.duration_ms));
    const h = document.createElement("h2");
    h.textContent = `run ${run.run_id} (${run.status})`;
    out.append(h);
    for (const s of run.spans) {
      const row = document.createElement("div"); row.className = "row";
      const label = document.createElement("div"); label.className = "label";
      label.textContent = `${s.kind} ${s.name}`;
      const lane = document.createElement("div"); lane.className = "lane";
      const bar = document.createElement("div");
      bar.className = `bar ${s.kind} ${s.status === "error" ? "error" : ""}`;
      bar.style.left = `${100 * (Date.parse(s.start) - t0) / total}%`;
      bar.style.width = `${Math.max(0.3, 100 * s.duration_ms / total)}%`;
      lane.append(bar);
      const ms = document.createElement("div"); ms.className = "ms";
      ms.textContent = `${s.duration_ms.toFixed(1)} ms`;
      row.append(label, lane, ms); out.append(row);
    }
  }
}
document.getElementById("go").onclick = show;
if (tok.value) show();
</script></body></html>
"""


@page.get("/traces/{trace_id}", response_class=HTMLResponse, include_in_schema=False)
async def trace_page(trace_id: Annotated[str, Path(pattern="^[0-9a-f]{32}$")]) -> HTMLResponse:
    """A waterfall of the trace's runs, drawn in the browser from ``GET /v1/traces/{id}``.

    The page asks for the bearer token and keeps it in the browser's localStorage.
    """
    return HTMLResponse(_WATERFALL)
