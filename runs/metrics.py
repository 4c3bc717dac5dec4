"""Metrics (practice 1, observability): Prometheus counters and histograms at ``/metrics``.

Most figures are derived in one place from the events every run emits (``observe_event``), so
what the metrics say and what the event log says cannot drift apart.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

from core.events import (
    Error,
    Event,
    RunFinished,
    RunStarted,
    ToolError,
    ToolResult,
    Warning_,
)

RUNS = Counter(
    "keel_runs_total",
    "Runs finished, by agent, agent variant (A/B) and status",
    ["agent", "variant", "status"],
)
RUN_SECONDS = Histogram(
    "keel_run_duration_seconds",
    "Run duration from run_started to run_finished, by agent variant and status",
    ["variant", "status"],
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
EVENTS = Counter("keel_events_total", "Events written to the event log, by type", ["type"])
TOOL_CALLS = Counter(
    "keel_tool_calls_total",
    "Tool calls by server, version and outcome",
    ["server", "version", "outcome"],
)
TOOL_SECONDS = Histogram(
    "keel_tool_call_duration_seconds",
    "Tool call duration",
    ["server", "version"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15, 30),
)
TOKENS = Counter("keel_llm_tokens_total", "LLM tokens used by runs", ["kind"])
ERRORS = Counter(
    "keel_errors_total", "Errors by stable code (run errors and tool errors)", ["code"]
)
DEGRADATIONS = Counter("keel_degradations_total", "Warnings told to users, by code", ["code"])
QUOTA_REJECTIONS = Counter("keel_quota_rejections_total", "Requests refused by a quota", ["limit"])
OPEN_STREAMS = Gauge("keel_open_streams", "SSE streams being served")

# Agent and variant of each run, from run_started, so run_finished can be labelled with them.
_agents: dict[str, tuple[str, str]] = {}


def observe_event(ev: Event) -> None:
    """Count one event (called once per event, when it is written)."""
    EVENTS.labels(ev.type).inc()
    if isinstance(ev, RunStarted):
        _agents[ev.run_id] = (ev.data.agent, ev.data.agent_variant or "")
    elif isinstance(ev, RunFinished):
        status = ev.data.status
        agent, variant = _agents.pop(ev.run_id, ("unknown", ""))
        RUNS.labels(agent, variant, status).inc()
        RUN_SECONDS.labels(variant, status).observe(ev.data.duration_ms / 1000)
        TOKENS.labels("input").inc(ev.data.usage.input_tokens)
        TOKENS.labels("output").inc(ev.data.usage.output_tokens)
    elif isinstance(ev, ToolResult):
        server, version = ev.data.server or "unknown", ev.data.version or "unknown"
        TOOL_CALLS.labels(server, version, "ok").inc()
        if ev.data.duration_ms is not None:
            TOOL_SECONDS.labels(server, version).observe(ev.data.duration_ms / 1000)
    elif isinstance(ev, ToolError):
        ERRORS.labels(ev.data.code).inc()
        server, version = ev.data.server or "unknown", ev.data.version or "unknown"
        TOOL_CALLS.labels(server, version, ev.data.code).inc()
    elif isinstance(ev, Error):
        ERRORS.labels(ev.data.code).inc()
    elif isinstance(ev, Warning_):
        DEGRADATIONS.labels(ev.data.code).inc()


def render() -> tuple[bytes, str]:
    """The exposition text and its content type."""
    return generate_latest(), CONTENT_TYPE_LATEST
