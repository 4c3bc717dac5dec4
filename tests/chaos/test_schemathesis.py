"""Schemathesis against the live API's OpenAPI document (issue 13: hostile HTTP input).

Schemathesis cannot be installed beside this project's pins (its ``jsonschema-rs`` conflicts
with ``langgraph-api``), so it has a hash-locked venv of its own, ``.venv-fuzz``
(``fuzz/requirements.lock``, built by ``make chaos``), and runs here as a CLI subprocess against
a real ``keel serve`` on real Postgres with the scripted model. Its token owns a thread with a
finished run, a trace and a chart artifact, and half of the generated ``thread_id``,
``run_id``, ``trace_id`` and ``artifact_id`` path values are those, so the examples reach past
the ownership checks. Every phase (examples, coverage, fuzzing, stateful), 500 examples per
operation; any 5xx fails the test. SSE answers are read up to ``max-stream-events`` events or
``request-timeout`` seconds, so no streaming endpoint is left out. Full scale only: the quick
suite keeps the hypothesis fuzzer (``test_openapi_fuzz.py``).
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from core.identity import issue_token
from tests.chaos.conftest import FULL, ApiProcess
from tests.fakes.openai_server import FakeOpenAI
from tests.sse import parse

ST = Path(__file__).resolve().parents[2] / ".venv-fuzz" / "bin" / "st"
EXAMPLES = 500
# Every check runs and every failure is counted. These four fail on Keel's schema as FastAPI
# writes it, not on its behaviour, so they are counted in the figure rather than failing the
# test: the schema lists 200/422 but not the 401/403/404/409/429 every operation may answer
# (ST103), and 422 as application/json where Keel answers problem+json (ST105); to
# schemathesis an unknown header makes a request invalid though HTTP ignores it (ST201); and
# "schema-valid" requests that Keel's own validators refuse with 422 (a NUL in a string, a
# memory field name outside [A-Za-z0-9_]{1,64}, the nullable Last-Event-ID header sent as
# "null") are ST202. Anything else fails: a 5xx (ST101/ST102) above all, a response violating
# its schema, a wrong Allow header (ST205, fixed), a request that errors or times out.
REPORTED = {"ST103", "ST105", "ST201", "ST202"}
SCOPES = ["memory:long_term", "admin:feedback", "exec:code"]
CHART = "import matplotlib.pyplot as plt\nplt.plot([1, 2], [3, 4])\nprint('chart')\n"

pytestmark = [
    pytest.mark.skipif(not FULL, reason="schemathesis runs only at KEEL_CHAOS_SCALE=full"),
    pytest.mark.skipif(
        not ST.exists(), reason="no .venv-fuzz: `make .venv-fuzz/.installed` (make chaos does)"
    ),
]


def _owned(api: ApiProcess, fake_llm: FakeOpenAI) -> dict[str, str]:
    """A thread of the fuzzing caller's with one finished run that drew a chart."""
    fake_llm.script.extend(
        [
            json.dumps({"steps": [{"description": "Plot it", "tool": "python_exec"}]}),
            json.dumps({"code": CHART}),
            "Plotted.",
            "Here it is.",
        ]
    )
    with api.client(scopes=SCOPES) as c:
        thread = c.post("/v1/threads").json()["thread_id"]
        body = {"input": {"message": "Plot two points"}}
        with c.stream("POST", f"/v1/threads/{thread}/runs", json=body) as r:
            frames = parse(r.iter_lines())
    assert frames[-1].data["data"]["status"] == "success", [f.data for f in frames]
    image = [f.data["data"] for f in frames if f.data["type"] == "image_generated"]
    return {
        "thread_id": thread,
        "run_id": frames[0].data["run_id"],
        "trace_id": frames[0].data["trace_id"],
        "artifact_id": image[0]["url"].rsplit("/", 1)[1],
    }


def _config(owned: dict[str, str]) -> str:
    """schemathesis.toml: owned ids as dictionaries bound to half of each path value."""
    lines = ["max-stream-events = 20", "request-timeout = 30", "", "[dictionaries]"]
    lines += [f"{name} = {{ values = [{json.dumps(value)}] }}" for name, value in owned.items()]
    lines += ["", "[parameters]"]
    lines += [f'"path.{name}" = {{ dictionary = "{name}", probability = 0.5 }}' for name in owned]
    return "\n".join(lines) + "\n"


def test_schemathesis_finds_no_server_errors(
    api_factory: Callable[..., ApiProcess],
    fake_llm: FakeOpenAI,
    tmp_path: Path,
    figure: Callable[[str, str], None],
) -> None:
    api = api_factory()
    owned = _owned(api, fake_llm)
    token = issue_token(api.auth, user="alice", tenant="acme", scopes=SCOPES, ttl_s=7200)
    spec = httpx.get(f"{api.url}/openapi.json").json()
    config = tmp_path / "schemathesis.toml"
    config.write_text(_config(owned))
    junit, har = tmp_path / "junit.xml", tmp_path / "requests.har"
    started = time.monotonic()
    proc = subprocess.run(
        [
            str(ST),
            "--config-file",
            str(config),
            "--no-color",
            "run",
            f"{api.url}/openapi.json",
            "--max-examples",
            str(EXAMPLES),
            "--checks",
            "all",
            "--continue-on-failure",
            "--header",
            f"Authorization: Bearer {token}",
            "--seed",
            "13",
            "--workers",
            "2",
            "--report",
            "junit,har",
            "--report-junit-path",
            str(junit),
            "--report-har-path",
            str(har),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=3000,
    )
    minutes = (time.monotonic() - started) / 60
    (tmp_path / "st.log").write_text(proc.stdout + proc.stderr)
    codes: Counter[str] = Counter()
    errors: list[str] = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        for item in case:
            if item.tag == "failure":
                codes.update(c.strip() for c in (item.get("message") or "").split(","))
            elif item.tag == "error":
                errors.append(f"{case.get('name')}: {(item.text or '')[:500]}")
    entries = json.loads(har.read_text())["log"]["entries"]
    statuses = Counter(e["response"]["status"] for e in entries)
    per_op = _per_operation(spec, entries)
    tail = proc.stdout[-8000:] + proc.stderr[-2000:]
    assert not errors, errors
    assert set(codes) <= REPORTED, (codes, tail)
    assert not any(s >= 500 for s in statuses), (statuses, tail)
    # A public operation without parameters or body has one possible request; the rest get 500.
    with_input = {op: n for op, n in per_op.items() if op not in _input_free(spec)}
    assert min(with_input.values()) >= EXAMPLES, per_op
    tested = re.search(r"Tested: (\d+)", proc.stdout)
    assert tested and int(tested[1]) == len(per_op), (per_op, tail)
    found = re.findall(r"(ST\d+) [^:\n]+: (\d+)", proc.stdout.split("Failures:")[-1])
    summary = ", ".join(f"{code} {n}" for code, n in sorted(found))
    figure(
        "schemathesis",
        f"{len(per_op)} operations, {len(entries)} requests (--max-examples {EXAMPLES}, all "
        f"phases, {minutes:.1f} min): {len(with_input)} operations with inputs "
        f"{min(with_input.values())}-{max(with_input.values())} requests each, "
        f"{len(per_op) - len(with_input)} without any {min(per_op.values())} each; 0 server "
        f"errors; statuses {dict(sorted(statuses.items()))}; schema-conformance findings "
        f"counted, not enforced: {summary or 'none'}",
    )


def _operations(spec: dict[str, Any]) -> dict[str, tuple[re.Pattern[str], dict[str, Any]]]:
    """Each operation of ``spec`` by label, with a pattern for its (percent-encoded) path."""
    return {
        f"{method.upper()} {path}": (re.compile(re.sub(r"\{[^}]+\}", "[^/]*", path) + "$"), op)
        for path, ops in spec["paths"].items()
        for method, op in ops.items()
    }


def _input_free(spec: dict[str, Any]) -> set[str]:
    return {
        name
        for name, (_, op) in _operations(spec).items()
        if not op.get("parameters") and "requestBody" not in op and not op.get("security")
    }


def _per_operation(spec: dict[str, Any], entries: list[dict[str, Any]]) -> Counter[str]:
    """Requests per documented operation; those to undeclared methods or paths are left out."""
    ops = _operations(spec)
    counts: Counter[str] = Counter({name: 0 for name in ops})
    for entry in entries:
        path = urlsplit(entry["request"]["url"]).path
        for name, (pattern, _) in ops.items():
            if name.startswith(entry["request"]["method"] + " ") and pattern.match(path):
                counts[name] += 1
                break
    return counts
