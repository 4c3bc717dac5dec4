"""Trace ids: W3C traceparent parsing and minting."""

from __future__ import annotations

import pytest

from core.tracing import new_trace_id, trace_id_from_traceparent


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "4bf92f3577b34da6a3ce929d0e0e4736",
        ),
        (
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-00",
            "4bf92f3577b34da6a3ce929d0e0e4736",
        ),
        ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", None),
        ("garbage", None),
        ("", None),
        (None, None),
    ],
)
def test_traceparent(header: str | None, expected: str | None) -> None:
    assert trace_id_from_traceparent(header) == expected


def test_minted_ids_are_w3c_shaped_and_distinct() -> None:
    ids = {new_trace_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(len(i) == 32 and int(i, 16) for i in ids)
