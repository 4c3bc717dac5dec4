"""Request tracing (practice 1): OpenTelemetry spans whose trace id is Keel's trace_id.

A run's span is started under a remote parent built from the request's trace_id, so the OTel
trace id and the id in every event, log line and ``X-Trace-Id`` header are the same value.
Node and LLM spans come from a LangChain callback handler (``graphs``), tool spans from the
gateway; the official instrumentations add the HTTP server span (FastAPI, whose trace id
Keel adopts as its trace_id), a span per SQL statement (psycopg) and per outgoing httpx request
(``instrument_clients``; the OpenAI client uses its own HTTP stack and is covered by the LLM
spans). Spans go to OTLP/HTTP when ``tracing.otlp_endpoint`` is set, to the console when
``tracing.console`` is true, and nowhere otherwise (the SDK then costs next to nothing).
"""

from __future__ import annotations

import secrets

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from core.settings import TracingSettings

_provider: TracerProvider | None = None


def provider(settings: TracingSettings | None = None) -> TracerProvider:
    """The process's tracer provider, made (and its exporters attached) on first use."""
    global _provider
    if _provider is None:
        settings = settings or TracingSettings()
        _provider = TracerProvider(
            resource=Resource.create({"service.name": settings.service_name})
        )
        if settings.otlp_endpoint:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            _provider.add_span_processor(
                BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otlp_endpoint))
            )
        if settings.console:
            _provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    return _provider


def instrument_clients() -> None:
    """Trace psycopg statements and httpx requests with the official instrumentations (once)."""
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor

    for instrumentor in (PsycopgInstrumentor(), HTTPXClientInstrumentor()):
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument(tracer_provider=provider(), skip_dep_check=True)


def add_processor(processor: SpanProcessor) -> None:
    """Attach another span processor (tests attach an in-memory exporter)."""
    provider().add_span_processor(processor)


def tracer(name: str) -> trace.Tracer:
    """A tracer of Keel's provider."""
    return provider().get_tracer(name)


def context_for(trace_id: str) -> Context:
    """A context whose (remote) parent span carries ``trace_id``, so children share it."""
    parent = SpanContext(
        trace_id=int(trace_id, 16),
        span_id=int.from_bytes(secrets.token_bytes(8), "big") or 1,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    return trace.set_span_in_context(NonRecordingSpan(parent))
