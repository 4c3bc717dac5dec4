"""Nodes build the event data models themselves: a wrong field fails where the event starts."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from pydantic import ValidationError

from core.events import (
    DATA_TYPES,
    EVENT_TYPES,
    MemoryData,
    NodeEvent,
    TableData,
    ToolCallData,
    envelope,
)
from graphs.emit import emit, status
from tests.unit.test_events import IDS, SAMPLES
from tools.servers.python_exec.v1.adapter import PythonExecV1


def test_each_data_model_is_the_data_of_one_event_type() -> None:
    assert sorted(DATA_TYPES.values()) == sorted(EVENT_TYPES)


@pytest.mark.parametrize("type_", sorted(SAMPLES))
def test_a_built_model_makes_the_same_event_as_its_fields(type_: str) -> None:
    model = next(m for m, t in DATA_TYPES.items() if t == type_)
    written: list[dict[str, Any]] = []
    emit(written.append, "n", model(**SAMPLES[type_]))
    assert written[0]["type"] == type_
    built = envelope(NodeEvent.model_validate(written[0]), **IDS)
    assert built == envelope(NodeEvent(type=type_, node="n", data=SAMPLES[type_]), **IDS)


def test_a_misspelt_field_fails_in_the_node_and_nothing_is_written() -> None:
    written: list[dict[str, Any]] = []
    with pytest.raises(ValidationError, match="tool\n"):
        emit(written.append, "researcher", ToolCallData(call_id="c", tool="x", args={}))  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="store"):
        emit(written.append, "memory_router", MemoryData(store="sesion", op="read"))  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="status"):
        status(written.append, "planner", "pondering")  # type: ignore[arg-type]
    assert written == []


def test_an_adapter_output_of_the_wrong_shape_fails_where_it_is_told() -> None:
    told: list[Any] = []
    result = {"code": "x", "tables": [{"name": "t", "columns": ["a"], "rows": "1,2"}]}
    with pytest.raises(ValidationError, match="rows"):
        PythonExecV1().shape(result, told.append, lambda png: "a.png")
    assert [type(t).__name__ for t in told] == ["CodeBlockData"]
    ok = {"code": "x", "images": [base64.b64encode(b"png").decode()], "tables": []}
    PythonExecV1().shape(ok, told.append, lambda png: "a.png")
    assert not any(isinstance(t, TableData) for t in told)
    assert [DATA_TYPES[type(t)] for t in told[1:]] == ["code_block", "image_generated"]
