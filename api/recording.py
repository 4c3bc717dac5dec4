"""Record-and-replay (practice 3): a run's events plus the model outputs that produced them.

``keel record THREAD -o run.json`` reads a run through the replay API and derives, from its
events, what each model call returned, in call order: the planner's plan (or an unparseable
reply when the run told a ``plan_invalid`` warning), each researcher finding, and the
summarizer's streamed answer. Re-running the graph with a scripted model fed these outputs, with
no LLM and no tools, must reproduce the same events: that is the regression test.

Tool outputs are not recorded yet: a recording replays runs whose steps used no tool (or
were recorded without tools); replaying tool steps needs a scripted gateway fed from the
recorded ``tool_result`` events.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

INVALID_PLAN = "<unparseable plan>"


def model_outputs(events: list[dict[str, Any]]) -> list[str]:
    """The model replies, in call order, that produced ``events``."""
    outputs: list[str] = []
    answer: list[str] = []
    for ev in events:
        kind, data = ev["type"], ev["data"]
        if kind == "warning" and data["code"] == "plan_invalid":
            outputs.append(INVALID_PLAN)
        elif kind == "plan" and not (outputs and outputs[-1] == INVALID_PLAN):
            outputs.append(json.dumps({"steps": data["steps"]}))
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
    started = next((e for e in events if e["type"] == "run_started"), None)
    if started is None:
        raise SystemExit("keel record: no run_started event for that run")
    return {
        "v": 1,
        "thread_id": thread_id,
        "run_id": run_id,
        "message": started["data"]["message"],
        "model_outputs": model_outputs(events),
        "events": events,
    }
