"""How often the default local model's tool arguments are malformed, and what repair does.

Usage (from the repository root, after ``make install``):
    .venv/bin/python -m bench.repair.measure [--out bench/repair/results.json]

It starts the packaged local model the way ``keel serve`` does (``LocalModelServer`` on the
dev config's GGUF), then for each of the questions below runs the product's own path:
the tool adapter's ``arguments`` for the tool the question needs
(``calendar.schedule_meeting`` through the ``MeetingArgs`` structured call,
``python_exec.run_python`` through ``CodeArgs``), then
``validate_and_repair`` against the tool's real MCP input schema with the model repairer.
Each call is counted as: ``valid`` (as the model wrote it), ``rules`` (fixed by the
deterministic step), ``llm`` (fixed by the model's rewrite), ``failed`` (structured
``tool_error``), or ``no_args`` (the model gave no parseable arguments at all).

``--mode free`` asks for the arguments without the grammar: the tool's schema goes in the
prompt and the first JSON object of the reply is taken, as agents without structured output
do; it shows what repair catches when the model is not constrained.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import re
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from langchain_core.messages import HumanMessage, SystemMessage

from core.identity import Identity
from core.settings import Settings
from graphs.context import RunContext
from graphs.llm import LocalModelServer, close_models
from graphs.nodes import model_for
from graphs.tool_step import ask, model_repair
from tools.adapter import Step
from tools.gateway import ToolSpec
from tools.pipeline import adapter_for
from tools.servers.calendar.v1.server import server as calendar
from tools.servers.python_exec.v1.server import server as python_exec
from tools.validation import ArgumentsInvalid, validate_and_repair

MEETINGS = [
    "Schedule a sync with Ana tomorrow at 3pm",
    "Book a 45 minute design review next Monday at 10am",
    "Set up a call with the vendor on Friday afternoon",
    "Arrange a one-on-one with Bo in two days at 9",
    "Schedule the quarterly planning on December 3rd at 14:00 for 2 hours",
    "Book lunch with the team tomorrow at noon",
    "Schedule a standup every morning starting tomorrow 9:30",
    "Book an interview with a candidate next Wednesday 4pm, 1 hour",
    "Set up a retro at the end of the week",
    "Schedule a demo for the client on 2026-12-01 at 11:00",
    "Book a meeting about the budget in 3 hours",
    "Schedule a 15 minute check-in tonight at 8pm",
    "Arrange a kickoff next Tuesday morning",
    "Book a review of the roadmap on the first of December at 10",
    "Schedule coffee with Dana the day after tomorrow at 10:30",
    "Set up a call tomorrow at half past two",
    "Schedule a board prep meeting next Thursday at 17:00 for 90 minutes",
    "Book a training session on Monday at 1pm",
    "Schedule a sync in 30 minutes",
    "Arrange a farewell lunch for Eve on Friday at 12:30",
]
CODE = [
    "Compute the mean and median of 3, 8, 1, 9, 4",
    "Plot the squares of 1 to 10",
    "Convert 100 miles to kilometres",
    "What is 2 to the power of 64?",
    "Compute the compound interest on 1000 at 5% for 10 years",
    "Sort the list 5, 2, 9, 1 and print it",
    "Count the words in the sentence 'the quick brown fox jumps'",
    "Compute the standard deviation of 2, 4, 4, 4, 5, 5, 7, 9",
    "Plot a sine wave from 0 to 2 pi",
    "How many days are there between 2026-01-01 and 2026-11-23?",
    "Compute the factorial of 20",
    "Print the first 15 Fibonacci numbers",
]


async def _spec(server: Any, pin: str, name: str, version: str) -> ToolSpec:
    tools = {t.name: t for t in await server.list_tools()}
    t = tools[name]
    return ToolSpec(pin, server.name, version, name, t.description or "", t.inputSchema, (), False)


async def _free_args(ctx: RunContext, spec: ToolSpec, question: str) -> dict[str, Any] | None:
    model = model_for(ctx, ctx.llm.step_max_tokens * 2)
    schema = {k: v for k, v in spec.input_schema.items() if k != "title"}
    schema["properties"] = {
        k: v for k, v in schema.get("properties", {}).items() if k != "idempotency_key"
    }
    prompt = (
        f"Call the tool {spec.name}. Its arguments follow this JSON schema: {json.dumps(schema)}."
        " Answer with the arguments as one JSON object and nothing else."
    )
    reply = await model.ainvoke([SystemMessage(prompt), HumanMessage(question)])
    m = re.search(r"\{.*\}", reply.text, re.S)
    if m is None:
        return None
    try:
        args = json.loads(m.group(0))
    except json.JSONDecodeError:
        return None
    return args if isinstance(args, dict) else None


async def measure(base_url: str, mode: str = "constrained") -> dict[str, Any]:
    """Run every question through its adapter's arguments and repair; count the outcomes."""
    settings = Settings()
    llm = settings.llm.model_copy(update={"base_url": base_url})
    ctx = RunContext(identity=Identity("bench", "bench"), llm=llm, run_id="bench", timezone="UTC")
    meeting = await _spec(calendar, "calendar-v1", "schedule_meeting", "1.0.0")
    code = await _spec(python_exec, "python-v1", "run_python", "1.0.0")
    rows = []
    for i, (spec, question) in enumerate(
        [(meeting, q) for q in MEETINGS] + [(code, q) for q in CODE]
    ):
        started = time.perf_counter()
        step = Step(spec.server, question, question, i, ctx.run_id)
        if mode == "free":
            args = await _free_args(ctx, spec, question)
        else:
            args, _ = await adapter_for(spec).arguments(spec, step, ask(ctx))
        if args is None:
            outcome, detail = "no_args", ""
        else:
            try:
                out = await validate_and_repair(
                    spec.input_schema,
                    args,
                    tz="UTC",
                    now=datetime.now(UTC),
                    llm=model_repair(ctx, spec, {}),
                    keep=frozenset({"idempotency_key"}),
                )
                methods = [r.method for r in out.repairs]
                outcome = "valid" if not methods else ("llm" if "llm" in methods else "rules")
                detail = "; ".join(c for r in out.repairs for c in r.changes)
            except ArgumentsInvalid as exc:
                outcome, detail = "failed", exc.detail
        rows.append(
            {
                "tool": spec.qualified,
                "question": question,
                "outcome": outcome,
                "detail": detail,
                "args": args,
                "seconds": round(time.perf_counter() - started, 2),
            }
        )
        print(f"{outcome:8} {spec.name:17} {question[:60]}  {detail[:80]}", flush=True)
    await close_models()
    counts = collections.Counter(r["outcome"] for r in rows)
    return {"mode": mode, "n": len(rows), "counts": dict(counts), "rows": rows}


def main() -> None:
    """Start the local model, measure, write the results."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--mode", choices=["constrained", "free"], default="constrained")
    p.add_argument("--out", default=None)
    a = p.parse_args()
    out = a.out or str(Path(__file__).with_name(f"results-{a.mode}.json"))
    settings = Settings()
    with tempfile.TemporaryDirectory() as tmp:
        server = LocalModelServer(settings.llm.local, settings.data_dir / "models", Path(tmp) / "l")
        base_url = server.start()
        try:
            result = asyncio.run(measure(base_url, a.mode))
        finally:
            server.stop()
    Path(out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"mode": a.mode, "n": result["n"], "counts": result["counts"]}))


if __name__ == "__main__":
    main()
