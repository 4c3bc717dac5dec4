"""Record-and-replay (practice 3): a run's events plus the model outputs that produced them.

``keel record THREAD -o run.json`` reads a run through the replay API and derives, from its
events, what each model call returned, in call order: the planner's plan (or an unparseable
reply when the run told a ``plan_invalid`` warning), the arguments the model wrote for a tool
that needs them (code, a meeting) and each rewrite of invalid arguments (``repair`` events),
each researcher finding, and the summarizer's streamed answer. It also keeps what each tool
answered (``tool_result`` events, in order) and the schemas of the tools the run used (from
``GET /v1/tools``). Re-running the graph with a scripted model and a scripted gateway fed these
outputs, with no LLM and no tool server, must reproduce the same events: that is the
regression test (``tests/recorded.py``).

Not replayable yet: ``python_exec`` steps (their charts are artifacts, not in the events) and
steps answered from a degraded source (cache, fallback).
"""

from __future__ import annotations

import json
from typing import Any

import httpx

INVALID_PLAN = "<unparseable plan>"
INVALID_ARGS = "<unparseable arguments>"
# Tools whose arguments the model writes (the others' come from the step's text).
MODEL_ARGUMENTS = frozenset({"python_exec.run_python", "calendar.schedule_meeting"})


def model_outputs(events: list[dict[str, Any]]) -> list[str]:
    """The model replies, in call order, that produced ``events``."""
    outputs: list[str] = []
    answer: list[str] = []
    derived: set[str] = set()  # call_ids whose model-written arguments are already out
    for ev in events:
        kind, data = ev["type"], ev["data"]
        if kind == "warning" and data["code"] == "plan_invalid":
            outputs.append(INVALID_PLAN)
        elif kind == "plan" and not (outputs and outputs[-1] == INVALID_PLAN):
            outputs.append(json.dumps({"steps": data["steps"]}))
        elif kind in ("repair", "tool_call") and data["tool_name"] in MODEL_ARGUMENTS:
            if data["call_id"] not in derived:
                derived.add(data["call_id"])
                outputs.append(json.dumps(data["before"] if kind == "repair" else data["args"]))
            if kind == "repair" and data["method"] == "llm":
                outputs.append(json.dumps(data["after"]))
        elif (
            kind == "tool_error"
            and data["tool_name"] in MODEL_ARGUMENTS
            and data["error"].startswith("no valid arguments")
        ):
            outputs.append(INVALID_ARGS)
        elif kind == "step_result":
            outputs.append(data["text"])
        elif kind == "text_delta":
            answer.append(data["text"])
    if any(ev["type"] == "agent_status" and ev["data"]["status"] == "summarizing" for ev in events):
        outputs.append("".join(answer))
    return outputs


def record(base_url: str, token: str, thread_id: str, run_id: str | None = None) -> dict[str, Any]:
    """Fetch a run's events (the thread's last run by default) and build its recording."""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=60) as client:
        params = {"run_id": run_id} if run_id else {}
        with client.stream("GET", f"/v1/replay/{thread_id}", params=params) as resp:
            if resp.status_code != 200:
                resp.read()
                raise SystemExit(f"keel record: {resp.status_code} {resp.text}")
            events = [
                json.loads(line[6:]) for line in resp.iter_lines() if line.startswith("data: ")
            ]
        if not run_id and events:
            run_id = events[-1]["run_id"]
            events = [e for e in events if e["run_id"] == run_id]
        used = {
            (e["data"]["tool_name"], e["data"]["version"])
            for e in events
            if e["type"] == "tool_call"
        }
        listed = client.get("/v1/tools").json().get("tools", []) if used else []
    started = next((e for e in events if e["type"] == "run_started"), None)
    if started is None:
        raise SystemExit("keel record: no run_started event for that run")
    return {
        "v": 1,
        "thread_id": thread_id,
        "run_id": run_id,
        "message": started["data"]["message"],
        "agent": started["data"]["agent"],
        "model_outputs": model_outputs(events),
        "tool_outputs": tool_outputs(events),
        "tools": [t for t in listed if (t["qualified_name"], t["version"]) in used],
        "events": events,
    }


def tool_outputs(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What each tool answered, in call order (from ``tool_result`` events)."""
    return [
        {k: ev["data"].get(k) for k in ("tool_name", "version", "result", "duration_ms")}
        for ev in events
        if ev["type"] == "tool_result"
    ]
