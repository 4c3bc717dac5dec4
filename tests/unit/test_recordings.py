"""Regression tests from recordings of real local-model runs (made with `keel record`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.recorded import load, normalise, replay

RECORDINGS = sorted((Path(__file__).parent.parent / "recordings").glob("*.json"))


def test_there_are_recordings() -> None:
    assert len(RECORDINGS) >= 3


@pytest.mark.asyncio
@pytest.mark.parametrize("path", RECORDINGS, ids=[p.stem for p in RECORDINGS])
async def test_graph_reproduces_the_recorded_run(path: Path) -> None:
    rec = load(path)
    assert normalise(await replay(rec)) == normalise(rec["events"])
