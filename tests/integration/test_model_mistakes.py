"""No model mistake fails a run: cut, empty, invalid or mistyped replies degrade and go on.

Over the real wire path (langchain-openai against the scripted OpenAI server): a reply cut at
its token cap (``finish_reason: length``, which the OpenAI client raises as
``LengthFinishReasonError`` for structured output) is asked again with a larger cap; cut again,
or empty, or of the wrong shape, the step degrades with a ``warning`` or ``tool_error`` and the
run ends ``success`` with an answer.
"""

from __future__ import annotations

import json

import httpx
import pytest

from tests.conftest import LiveServer, stream_run
from tests.fakes.openai_server import FakeOpenAI
from tests.sse import Frame

CODE_PLAN = json.dumps(
    {"steps": [{"description": "Plot the squares of 1 to 5", "tool": "python_exec"}]}
)
NONE_PLAN = json.dumps({"steps": [{"description": "Answer from knowledge", "tool": "none"}]})


def _run(live: LiveServer, message: str) -> list[Frame]:
    token = live.token("mia", "acme", scopes=["exec:code"])
    with httpx.Client(
        base_url=live.url, timeout=120, headers={"Authorization": f"Bearer {token}"}
    ) as c:
        tid = c.post("/v1/threads").json()["thread_id"]
        _, frames = stream_run(c, tid, message)
    return frames


def _of(frames: list[Frame], type_: str) -> list[dict[str, object]]:
    return [f.data["data"] for f in frames if f.data["type"] == type_]


def _answer(frames: list[Frame]) -> str:
    return "".join(str(d["text"]) for d in _of(frames, "text_delta"))


def test_a_plan_cut_at_its_cap_is_asked_again_with_a_larger_cap(
    live: LiveServer, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script.extend(['!length {"steps": [{"descr', NONE_PLAN, "A fact.", "The answer."])
    frames = _run(live, "Why do cats purr?")
    caps = [
        r.get("max_tokens") or r.get("max_completion_tokens")
        for r in fake_llm.requests
        if r.get("response_format")
    ]
    assert caps[1] == 2 * caps[0], caps
    assert _of(frames, "plan")[0]["steps"][0]["description"] == "Answer from knowledge"
    assert not _of(frames, "warning") and not _of(frames, "error")
    assert frames[-1].data["data"]["status"] == "success"
    assert _answer(frames) == "The answer."


def test_a_plan_cut_twice_degrades_to_one_step(live: LiveServer, fake_llm: FakeOpenAI) -> None:
    fake_llm.script.extend(['!length {"steps": [', '!length {"steps": [{', "A fact.", "Answer."])
    frames = _run(live, "Why do cats purr?")
    assert [w["code"] for w in _of(frames, "warning")] == ["plan_invalid"]
    assert not _of(frames, "error")
    assert frames[-1].data["data"]["status"] == "success"
    assert _answer(frames) == "Answer."


@pytest.mark.parametrize(
    "replies",
    [
        ['!length {"code": "import matplotlib', '!length {"code": "import matplotlib.pyplot'],
        ["", ""],
        ['{"code": 42}', '{"code": 42}'],
        ["not json at all", "not json at all"],
    ],
    ids=["cut twice", "empty", "wrong type", "not json"],
)
def test_code_arguments_the_model_gets_wrong_are_a_tool_error_and_the_run_goes_on(
    live: LiveServer, fake_llm: FakeOpenAI, replies: list[str]
) -> None:
    fake_llm.script.extend([CODE_PLAN, *replies, "I could not run the code.", "No chart, sorry."])
    frames = _run(live, "Plot the squares of 1 to 5")
    errors = _of(frames, "tool_error")
    assert [(e["tool_name"], e["code"]) for e in errors] == [
        ("python_exec.run_python", "tool_error")
    ], errors
    assert not _of(frames, "tool_call") and not _of(frames, "error")
    assert frames[-1].data["data"]["status"] == "success"
    assert _answer(frames) == "No chart, sorry."


def test_code_that_raises_is_rewritten_once_with_its_error(
    live: LiveServer, fake_llm: FakeOpenAI
) -> None:
    broken = json.dumps({"code": "import matplotlib.pyplot as plt\nplt.bar([120, 95])"})
    fixed = json.dumps({"code": "sum(i * i for i in range(1, 51))"})
    fake_llm.script.extend([CODE_PLAN, broken, fixed, "It is 42925.", "The sum is 42925."])
    frames = _run(live, "Plot the squares of 1 to 5")
    results = [r["result"] for r in _of(frames, "tool_result")]
    assert "missing 1 required positional argument" in str(results[0]["error"])
    assert results[1]["stdout"].strip() == "42925"  # the bare last expression was printed
    assert [w["code"] for w in _of(frames, "warning")] == ["tool_retry"]
    retry_prompt = json.dumps(fake_llm.requests[2]["messages"])
    assert "The previous attempt failed" in retry_prompt and "plt.bar([120, 95])" in retry_prompt
    assert frames[-1].data["data"]["status"] == "success"
