"""Checkpoints load fail-closed: a type strict msgpack blocks is an error, never quiet data.

With ``LANGGRAPH_STRICT_MSGPACK`` LangGraph refuses to rebuild a type outside its safe set,
but then hands back the type's raw payload and goes on, so a tampered checkpoint turns into
whatever state the payload happens to make. Here any blocked type or method call, and any
blob that cannot be loaded at all (a pickle, an unknown format, a JSON constructor), raises
``CheckpointRejected``: the run ends with an ``error`` event and nothing from the blob is used.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from langgraph.checkpoint.serde.event_hooks import SerdeEvent, register_serde_event_listener
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from core.errors import KeelError

_BLOCKED_KINDS = frozenset({"msgpack_blocked", "msgpack_method_blocked"})
_blocked: ContextVar[list[str] | None] = ContextVar("keel_serde_blocked", default=None)


class CheckpointRejected(KeelError):
    """A stored checkpoint holds data that may not be loaded (tampered or foreign)."""

    code = "checkpoint_rejected"
    status = 409
    title = "Checkpoint rejected"


def _note(event: SerdeEvent) -> None:
    seen = _blocked.get()
    if seen is not None and event.get("kind") in _BLOCKED_KINDS:
        seen.append(f"{event.get('module')}.{event.get('name')}")


register_serde_event_listener(_note)


class FailClosedSerializer(JsonPlusSerializer):
    """LangGraph's serializer (strict msgpack, no pickle) that raises instead of degrading."""

    def loads_typed(self, data: tuple[str, bytes]) -> Any:
        """Load ``data`` or raise ``CheckpointRejected``."""
        token = _blocked.set([])
        try:
            try:
                value = super().loads_typed(data)
            except Exception as exc:
                raise CheckpointRejected(
                    f"a checkpoint blob of type {data[0]!r} cannot be loaded ({type(exc).__name__})"
                ) from exc
            if blocked := _blocked.get():
                raise CheckpointRejected(
                    f"a checkpoint names types that may not be loaded: {', '.join(blocked)}"
                )
            return value
        finally:
            _blocked.reset(token)
