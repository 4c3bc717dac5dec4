"""Request tracing (practice 1): OpenTelemetry spans whose trace id is Keel's trace_id.

A run's span is started under a remote parent built from the request's trace_id, so the OTel
trace id and the id in every event, log line and ``X-Trace-Id`` header are the same value.
Node and LLM spans come from a LangChain callback handler (``graphs``), tool spans from the
gateway; the official instrumentations add the HTTP server span (FastAPI, whose trace id
Keel adopts as its trace_id), a span per SQL statement (psycopg) and, in ``keel serve``, per
outgoing httpx request (the OpenAI client uses its own HTTP stack and is covered by the LLM
spans). Spans go to OTLP/HTTP when ``tracing.otlp_endpoint`` is set, to the console when
``tracing.console`` is true, and nowhere otherwise (the SDK then costs next to nothing).
"""

from __future__ import annotations

import secrets
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from core.settings import TracingSettings

_provider: TracerProvider | None = None
_exporting: set[tuple[str | None, bool]] = set()


def provider(settings: TracingSettings | None = None) -> TracerProvider:
    """The process's SDK tracer provider, made on first use and installed as the global one.

    Tracers from ``tracer`` resolve to it lazily, so modules may take theirs at import time.
    """
    global _provider
    if _provider is None:
        settings = settings or TracingSettings()
        _provider = TracerProvider(
            resource=Resource.create({"service.name": settings.service_name})
        )
        trace.set_tracer_provider(_provider)
    return _provider


def configure(settings: TracingSettings) -> None:
    """Apply ``settings``: exporters (once per endpoint) and the psycopg instrumentation.

    With ``enabled: false`` nothing is installed and every span is a no-op: Keel still mints
    and propagates its trace_id, in events, logs and headers.
    """
    if not settings.enabled:
        return
    p = provider(settings)
    key = (settings.otlp_endpoint, settings.console)
    if key not in _exporting:
        _exporting.add(key)
        if settings.otlp_endpoint:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            p.add_span_processor(
                BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otlp_endpoint))
            )
        if settings.console:
            p.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor

    _instrument(PsycopgInstrumentor())


def instrument_httpx() -> None:
    """Trace outgoing httpx requests (and propagate ``traceparent``) from this process.

    Called by ``keel serve`` only: the instrumentation is process-wide and replaces any
    ``traceparent`` a caller set, which would rewrite the headers of test clients that share
    a process with the app.
    """
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    _instrument(HTTPXClientInstrumentor())


def _instrument(instrumentor: Any) -> None:
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument(tracer_provider=provider(), skip_dep_check=True)


def add_processor(processor: SpanProcessor) -> None:
    """Attach another span processor (tests attach an in-memory exporter)."""
    provider().add_span_processor(processor)


def tracer(name: str) -> trace.Tracer:
    """A tracer that resolves to Keel's provider once one is installed (no-op until then)."""
    return trace.ProxyTracer(name)


def context_for(trace_id: str) -> Context:
    """A context whose (remote) parent span carries ``trace_id``, so children share it."""
    parent = SpanContext(
        trace_id=int(trace_id, 16),
        span_id=int.from_bytes(secrets.token_bytes(8), "big") or 1,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    return trace.set_span_in_context(NonRecordingSpan(parent))
