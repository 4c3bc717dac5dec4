"""Schema-driven fuzzing of every operation of the OpenAPI document (OWASP LLM10).

Schemathesis cannot be installed beside this project's pins (its ``jsonschema-rs`` conflicts
with ``langgraph-api``, which ``langgraph-cli[inmem]`` pulls in); ``test_schemathesis.py`` runs
it from a venv of its own under ``make chaos``. This test does the same with hypothesis, already
a dev dependency, so ``make test`` fuzzes every operation too: it reads ``/openapi.json`` from
the running API, derives a strategy from each operation's parameters and JSON body schema
(in-schema values, values just out of bounds, wrong types and unknown keys), and sends the
examples with a valid token. No answer may be a 5xx, and every 4xx is problem+json with the
trace_id.
Quick: 10 examples per operation; ``make chaos``: 500.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.chaos.conftest import ApiProcess, scaled

EXAMPLES = scaled(10, 500)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)


def from_schema(schema: dict[str, Any], defs: dict[str, Any], depth: int = 0) -> Any:
    """A strategy for values of ``schema``, mostly valid, sometimes just off."""
    if "$ref" in schema:
        return from_schema(defs[schema["$ref"].rsplit("/", 1)[1]], defs, depth)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            return st.one_of([from_schema(s, defs, depth) for s in schema[key]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"]) | st.text(max_size=12)
    kind = schema.get("type")
    if kind == "string":
        top = int(schema.get("maxLength", 40))
        return st.text(min_size=0, max_size=min(top + 2, 300)) | st.just("x" * (top + 1))
    if kind == "integer":
        lo, hi = schema.get("minimum"), schema.get("maximum")
        edges = [v for b in (lo, hi) if b is not None for v in (b - 1, b, b + 1)]
        return st.integers(min_value=-(2**70), max_value=2**70) | st.sampled_from(edges or [0])
    if kind == "number":
        return st.floats(allow_nan=False) | st.integers()
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        return st.lists(from_schema(schema.get("items", {}), defs, depth + 1), max_size=4)
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        if depth > 3:
            return st.just({})
        required = set(schema.get("required", []))
        fixed = {k: from_schema(v, defs, depth + 1) for k, v in props.items() if k in required}
        optional = {
            k: from_schema(v, defs, depth + 1) for k, v in props.items() if k not in required
        }
        base = st.fixed_dictionaries(fixed, optional=optional)
        extra = st.dictionaries(st.text(min_size=1, max_size=8), JSON, max_size=2)
        return st.one_of(base, st.tuples(base, extra).map(lambda t: {**t[1], **t[0]}))
    return JSON


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    skip = {"/metrics"}
    return [
        (method.upper(), path, op)
        for path, ops in spec["paths"].items()
        if path not in skip
        for method, op in ops.items()
    ]


def _fuzz(
    c: httpx.Client,
    method: str,
    path: str,
    op: dict[str, Any],
    defs: dict[str, Any],
    own_thread: str,
    statuses: Counter[int],
) -> None:
    """Send ``EXAMPLES`` generated requests to one operation."""
    params = op.get("parameters", [])
    body = op.get("requestBody", {}).get("content", {}).get("application/json")
    strategies = {p["name"]: st.none() | from_schema(p.get("schema", {}), defs) for p in params}
    if any(p["in"] == "path" and p["name"] == "thread_id" for p in params):
        strategies["thread_id"] = st.just(own_thread) | from_schema({"type": "string"}, defs)
    body_st = from_schema(body["schema"], defs) if body else st.none()
    name = f"{method} {path}"

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(values=st.fixed_dictionaries(strategies), payload=body_st)
    def check(values: dict[str, Any], payload: Any) -> None:
        url, query, hdrs = path, {}, {}
        for p in params:
            v = values[p["name"]]
            if p["in"] == "path":
                filled = quote(str(v if v is not None else "x"), safe="")
                url = url.replace("{" + p["name"] + "}", filled)
            elif v is not None and p["in"] == "query":
                query[p["name"]] = str(v)
            elif v is not None and p["in"] == "header":
                hdrs[p["name"]] = str(v).encode("latin-1", "replace").strip() or b"-"
        content = json.dumps(payload).encode() if body else None
        if content is not None:
            hdrs["content-type"] = "application/json"
        with c.stream(method, url, params=query, headers=hdrs, content=content) as r:
            text = "" if r.status_code == 200 else r.read().decode(errors="replace")
        statuses[r.status_code] += 1
        assert r.status_code < 500, (name, url, payload, r.status_code, text[:300])
        if r.status_code >= 400:
            assert r.headers["content-type"] == "application/problem+json", (name, text)
            assert json.loads(text)["trace_id"] == r.headers["x-trace-id"]

    check()


def test_every_operation_answers_without_server_errors(
    api_factory: Callable[..., ApiProcess], figure: Callable[[str, str], None]
) -> None:
    # A separate process: hypothesis refuses draws while another thread moves `random`.
    api = api_factory()
    statuses: Counter[int] = Counter()
    scopes = ["memory:long_term", "admin:feedback", "exec:code"]
    with api.client(scopes=scopes) as c:
        spec = c.get("/openapi.json").json()
        defs = spec.get("components", {}).get("schemas", {})
        own = c.post("/v1/threads").json()["thread_id"]
        operations = _operations(spec)
        for method, path, op in operations:
            _fuzz(c, method, path, op, defs, own, statuses)
    total = sum(statuses.values())
    figure(
        "openapi fuzz",
        f"{len(operations)} operations, up to {EXAMPLES} generated examples each (fewer where "
        f"the input space is smaller; {total} requests, hypothesis from /openapi.json): "
        f"0 server errors; statuses {dict(sorted(statuses.items()))}",
    )
