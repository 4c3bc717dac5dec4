"""Tool steps in the graph: a plan step handed to the tool pipeline (``tools/pipeline.py``).

The pipeline runs the whole call (arguments, repair, confirmation, the checked call, output
events, degradation) and returns a typed outcome. The graph supplies what only it has: the
run's identity and trace, its stream writer for events, and its model with structured output,
which writes arguments (code, meetings) and repairs invalid ones given the exact error.
"""

from __future__ import annotations

import json
import re
from typing import Any

import openai
from langchain_core.exceptions import OutputParserException
from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.types import StreamWriter
from pydantic import BaseModel, ValidationError

from graphs import prompts
from graphs.context import RunContext
from graphs.emit import emit, usage_of
from graphs.nodes import structured
from tools.adapter import Ask, Step, Usage
from tools.gateway import ToolSpec
from tools.pipeline import Caller, ToolPipeline
from tools.validation import RepairModel


def pipeline(writer: StreamWriter, node: str, ctx: RunContext) -> ToolPipeline:
    """The run's tool pipeline, telling its events as ``node``'s."""
    assert ctx.tools is not None

    caller = Caller(
        identity=ctx.identity,
        trace_id=ctx.trace_id,
        agent=ctx.agent,
        timezone=ctx.timezone,
        tell=lambda data: emit(writer, node, data),
        ask=ask(ctx),
        repair_model=lambda spec, usage: model_repair(ctx, spec, usage),
    )
    return ToolPipeline(ctx.tools, caller)


def step_of(
    ctx: RunContext,
    step: dict[str, Any],
    question: str,
    index: int,
    earlier: tuple[dict[str, Any], ...] = (),
    conversation: str = "",
) -> Step:
    """The pipeline's view of a plan step."""
    told = prompts.data("conversation", conversation[-1500:]) if conversation else ""
    tool, text, run, tz = step["tool"], step["description"], ctx.run_id, ctx.timezone
    return Step(tool, text, question, index, run, earlier, tz, conversation=told)


def ask(ctx: RunContext) -> Ask:
    """The run's model with a pydantic schema as structured output.

    An invalid reply (empty, not JSON, wrong types) is asked again once with the validation
    error; ``None`` if that fails too (the pipeline then tells a ``tool_error``).
    """

    async def asking(
        schema: type[BaseModel], instruction: str, text: str
    ) -> tuple[BaseModel | None, Usage]:
        runnable = structured(ctx, ctx.llm.step_max_tokens * 2, schema)
        messages: list[Any] = [SystemMessage(instruction), HumanMessage(text)]
        usage: Usage = {}
        for _ in range(2):
            try:
                out: Any = await runnable.ainvoke(messages)
            except (ValidationError, OutputParserException) as exc:
                out = {"raw": None, "parsed": None, "parsing_error": exc}
            for k, v in usage_of(out.get("raw")).items():
                usage[k] = usage.get(k, 0) + v
            if isinstance(out.get("parsed"), schema):
                return out["parsed"], usage
            if isinstance(out.get("parsing_error"), openai.LengthFinishReasonError):
                break  # cut at twice the cap already: a model that loops, not a fixable reply
            error = str(out.get("parsing_error") or "no reply")[:300]
            messages = [*messages[:2], HumanMessage(f"{prompts.INVALID_REPLY}\n{error}")]
        return None, usage

    return asking


def model_repair(ctx: RunContext, spec: ToolSpec, usage: Usage) -> RepairModel:
    """The model's rewrite of invalid arguments: the schema is enforced as structured output."""
    schema = {**spec.input_schema, "title": re.sub(r"[^A-Za-z0-9_-]", "_", spec.name) + "_args"}

    async def rewrite(_: dict[str, Any], args: dict[str, Any], error: str) -> dict[str, Any] | None:
        runnable = structured(ctx, ctx.llm.step_max_tokens * 2, schema)
        prompt = prompts.REPAIR_ARGS.format(
            tool=spec.qualified,
            schema=json.dumps(spec.input_schema),
            args=json.dumps(args, default=str),
            error=error,
        )
        try:
            out: Any = await runnable.ainvoke([SystemMessage(prompt), HumanMessage(error)])
        except (ValidationError, OutputParserException, ValueError):
            return None
        for k, v in usage_of(out.get("raw")).items():
            usage[k] = usage.get(k, 0) + v
        parsed = out.get("parsed")
        return parsed if isinstance(parsed, dict) else None

    return rewrite
