"""The typed event protocol (practices 5 and 6): envelope v1 and one discriminated union.

Nodes emit a ``NodeEvent`` (type, node, data) through the LangGraph stream writer; the run
executor wraps it in an ``Envelope`` with ``seq``, ids and a timestamp. The JSON Schema of
``Event`` is served at ``GET /v1/schema/events`` and is the source of the UI's types.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

AgentStatus = Literal[
    "queued",
    "planning",
    "retrieving_memory",
    "calling_tool",
    "awaiting_confirmation",
    "thinking",
    "summarizing",
    "done",
    "error",
    "cancelled",
]
# ``interrupted``: the run paused for a human decision (``confirmation_required``) and can be
# resumed by ``POST /v1/runs/{run_id}/confirm``, which starts a new run on the thread.
RunStatus = Literal["success", "error", "cancelled", "timeout", "interrupted"]


class EventData(BaseModel):
    """One event type's ``data``, built where the event starts so a wrong field fails there."""

    model_config = ConfigDict(extra="forbid", json_schema_serialization_defaults_required=True)


class RunStartedData(EventData):
    """A run began: what was asked, by which agent, from which checkpoint."""

    agent: str
    message: str
    parent_checkpoint_id: str | None = None
    agent_variant: str | None = None  # the variant the feedback router chose, if any
    variant_reason: str | None = None  # why: fixed, exploration, or the Thompson draws
    resumes_run_id: str | None = None  # set when this run resumes an interrupted one


class AgentStatusData(EventData):
    """The agent's phase; the UI's state machine moves only on these."""

    status: AgentStatus
    tool_name: str | None = None
    detail: str | None = None
    position: int | None = Field(
        default=None, ge=1, description="With status queued: place in the user's run queue"
    )


class TextDeltaData(EventData):
    """A piece of the streamed answer."""

    text: str


class PlanStepData(EventData):
    """One step of a plan."""

    description: str
    tool: str


class PlanData(EventData):
    """The planner's typed plan."""

    steps: list[PlanStepData]


class StepResultData(EventData):
    """What the researcher found for one plan step."""

    index: int
    description: str
    text: str


class ToolCallData(EventData):
    """A tool is being called."""

    call_id: str
    tool_name: str
    version: str | None = None
    args: dict[str, Any]
    server: str | None = None


class ToolResultData(EventData):
    """A tool answered."""

    call_id: str
    tool_name: str
    result: Any
    duration_ms: float | None = None
    server: str | None = None
    version: str | None = None
    cached_at: str | None = None  # set when the result came from the cache (degraded)


class ToolErrorData(EventData):
    """A tool call failed or was refused; told to the user and to the model."""

    call_id: str | None = None
    tool_name: str
    code: str = "tool_error"
    error: str
    expected: str | None = None
    hint: str | None = None
    server: str | None = None
    version: str | None = None


class ConfirmationRequiredData(EventData):
    """A tool call passed its permission check and waits for the caller's decision.

    The run ends ``interrupted``; ``POST /v1/runs/{run_id}/confirm`` with ``approve`` resumes
    it in a new run, which calls the tool with exactly these ``args`` or not at all.
    """

    confirmation_id: str
    call_id: str
    tool_name: str
    server: str
    version: str
    args: dict[str, Any]
    permissions: list[str] = Field(default_factory=list)


class ConfirmationDecidedData(EventData):
    """The caller's decision on a ``confirmation_required`` call, first event of the resumed run."""

    confirmation_id: str
    tool_name: str
    approve: bool
    user_id: str
    comment: str | None = None


class RepairData(EventData):
    """Tool arguments were repaired."""

    tool_name: str
    before: dict[str, Any]
    after: dict[str, Any]
    method: str  # deterministic | llm
    call_id: str | None = None
    changes: list[str] = Field(default_factory=list)  # the rules applied, e.g. "enum since"
    valid: bool = True  # whether the arguments passed the schema after this step


class WarningData(EventData):
    """Something degraded but the run goes on."""

    code: str
    message: str
    tool_name: str | None = None


class CodeBlockData(EventData):
    """Source code to render highlighted."""

    language: str
    code: str


class ImageData(EventData):
    """An image produced during the run."""

    url: str
    alt: str = ""
    mime: str = "image/png"


class TableData(EventData):
    """Tabular output."""

    columns: list[str]
    rows: list[list[Any]]
    title: str | None = None


class MemoryData(EventData):
    """A memory layer was read or written."""

    store: Literal["short_term", "session", "long_term"]
    op: Literal["read", "write", "delete"]
    hits: int = 0


class ErrorData(EventData):
    """The run failed; ``code`` is stable, ``message`` is safe to show."""

    code: str
    message: str


class Usage(EventData):
    """Token usage of a run."""

    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0


class RunFinishedData(EventData):
    """The last event of every run."""

    status: RunStatus
    usage: Usage = Field(default_factory=Usage)
    duration_ms: float


class _Envelope(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_serialization_defaults_required=True)

    v: Literal[1] = 1
    seq: int = Field(ge=1)
    thread_id: str
    run_id: str
    trace_id: str
    ts: datetime
    node: str | None = None


class RunStarted(_Envelope):
    """See ``RunStartedData``."""

    type: Literal["run_started"] = "run_started"
    data: RunStartedData


class AgentStatusEvent(_Envelope):
    """See ``AgentStatusData``."""

    type: Literal["agent_status"] = "agent_status"
    data: AgentStatusData


class TextDelta(_Envelope):
    """See ``TextDeltaData``."""

    type: Literal["text_delta"] = "text_delta"
    data: TextDeltaData


class PlanEvent(_Envelope):
    """See ``PlanData``."""

    type: Literal["plan"] = "plan"
    data: PlanData


class StepResult(_Envelope):
    """See ``StepResultData``."""

    type: Literal["step_result"] = "step_result"
    data: StepResultData


class ToolCall(_Envelope):
    """See ``ToolCallData``."""

    type: Literal["tool_call"] = "tool_call"
    data: ToolCallData


class ToolResult(_Envelope):
    """See ``ToolResultData``."""

    type: Literal["tool_result"] = "tool_result"
    data: ToolResultData


class ToolError(_Envelope):
    """See ``ToolErrorData``."""

    type: Literal["tool_error"] = "tool_error"
    data: ToolErrorData


class ConfirmationRequired(_Envelope):
    """See ``ConfirmationRequiredData``."""

    type: Literal["confirmation_required"] = "confirmation_required"
    data: ConfirmationRequiredData


class ConfirmationDecided(_Envelope):
    """See ``ConfirmationDecidedData``."""

    type: Literal["confirmation_decided"] = "confirmation_decided"
    data: ConfirmationDecidedData


class Repair(_Envelope):
    """See ``RepairData``."""

    type: Literal["repair"] = "repair"
    data: RepairData


class Warning_(_Envelope):
    """See ``WarningData``."""

    type: Literal["warning"] = "warning"
    data: WarningData


class CodeBlock(_Envelope):
    """See ``CodeBlockData``."""

    type: Literal["code_block"] = "code_block"
    data: CodeBlockData


class ImageGenerated(_Envelope):
    """See ``ImageData``."""

    type: Literal["image_generated"] = "image_generated"
    data: ImageData


class Table(_Envelope):
    """See ``TableData``."""

    type: Literal["table"] = "table"
    data: TableData


class MemoryEvent(_Envelope):
    """See ``MemoryData``."""

    type: Literal["memory"] = "memory"
    data: MemoryData


class Error(_Envelope):
    """See ``ErrorData``."""

    type: Literal["error"] = "error"
    data: ErrorData


class RunFinished(_Envelope):
    """See ``RunFinishedData``."""

    type: Literal["run_finished"] = "run_finished"
    data: RunFinishedData


Event = Annotated[
    RunStarted
    | AgentStatusEvent
    | TextDelta
    | PlanEvent
    | StepResult
    | ToolCall
    | ToolResult
    | ToolError
    | ConfirmationRequired
    | ConfirmationDecided
    | Repair
    | Warning_
    | CodeBlock
    | ImageGenerated
    | Table
    | MemoryEvent
    | Error
    | RunFinished,
    Field(discriminator="type"),
]
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)
EVENT_TYPES: frozenset[str] = frozenset(
    m.model_fields["type"].default
    for m in Event.__origin__.__args__  # type: ignore[attr-defined]
)


DATA_TYPES: dict[type[EventData], str] = {
    m.model_fields["data"].annotation: m.model_fields["type"].default
    for m in Event.__origin__.__args__  # type: ignore[attr-defined]
}
"""The event type each data model is the ``data`` of (one model, one type)."""


class NodeEvent(BaseModel):
    """What a node hands to the stream writer: the envelope minus ids, seq and time."""

    model_config = ConfigDict(extra="forbid")

    type: str
    node: str | None = None
    data: dict[str, Any]

    @classmethod
    def of(cls, node: str | None, data: EventData) -> dict[str, Any]:
        """The stream writer's chunk for ``data``, already validated where it was built."""
        body = data.model_dump(exclude_unset=True)
        return {"type": DATA_TYPES[type(data)], "node": node, "data": body}


def now() -> datetime:
    """The current UTC time, the clock every envelope uses."""
    return datetime.now(UTC)


def envelope(
    ev: NodeEvent, *, seq: int, thread_id: str, run_id: str, trace_id: str, ts: datetime
) -> Event:
    """Validate a node event into a full envelope; raises ``ValidationError`` if it is malformed."""
    return EVENT_ADAPTER.validate_python(
        {
            "v": 1,
            "type": ev.type,
            "seq": seq,
            "thread_id": thread_id,
            "run_id": run_id,
            "trace_id": trace_id,
            "ts": ts,
            "node": ev.node,
            "data": ev.data,
        }
    )


def events_json_schema() -> dict[str, Any]:
    """The JSON Schema of the event union (served to the UI and to clients)."""
    return EVENT_ADAPTER.json_schema(mode="serialization")
