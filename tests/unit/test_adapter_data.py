"""Adapters hand the model data it need not compute: tables from printed rows, empty searches
said as such; and the summarizer answers "I don't know" when every search was
empty, without the model."""

from __future__ import annotations

from typing import Any

import pytest

from core.events import DATA_TYPES
from graphs.nodes.summarizer import known_answer
from tools.servers.documents.v1.adapter import DocumentsV1
from tools.servers.github_trending.v2.adapter import GithubTrendingV2
from tools.servers.github_trending.wording import repos_note
from tools.servers.python_exec.v1.adapter import PythonExecV1, _prelude, printed_table

REPOS = {
    "source": "snapshot",
    "repos": [
        {"full_name": "a/one", "stars": 900, "forks": 10, "url": "https://github.com/a/one"},
        {"full_name": "b/two", "stars": 300, "forks": 70, "url": "https://github.com/b/two"},
        {"full_name": "c/three", "stars": 500, "forks": 5, "url": "https://github.com/c/three"},
    ],
}


def test_the_repository_note_lists_every_repository_in_trending_order() -> None:
    note = repos_note(REPOS) or ""
    assert note.splitlines()[0] == "source: snapshot, in trending order"
    assert [ln.split(":")[0] for ln in note.splitlines()[1:]] == [
        "1. a/one",
        "2. b/two",
        "3. c/three",
    ]


@pytest.mark.parametrize(
    ("printed", "columns", "first"),
    [
        ("n\tvalue\n0\t1\n1\t2\n2\t4", ["n", "value"], ["0", "1"]),
        ("| C | F |\n|---|---|\n| 0 | 32.0 |\n| 10 | 50.0 |", ["C", "F"], ["0", "32.0"]),
        (
            "Celsius  Fahrenheit\n0        32.0\n10       50.0",
            ["Celsius", "Fahrenheit"],
            ["0", "32.0"],
        ),
        ("0 1\n1 2\n2 4", ["column 1", "column 2"], ["0", "1"]),
    ],
)
def test_printed_rows_become_a_table(printed: str, columns: list[str], first: list[str]) -> None:
    (table,) = printed_table(printed)
    assert table["columns"] == columns
    assert table["rows"][0] == first


@pytest.mark.parametrize("printed", ["", "42", "The answer is 42.\nDone, all good here."])
def test_prose_is_not_a_table(printed: str) -> None:
    assert printed_table(printed) == []


def _shaped(result: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    told: list[tuple[str, dict[str, Any]]] = []
    PythonExecV1().shape(
        result, lambda data: told.append((DATA_TYPES[type(data)], data.model_dump())), lambda _: "x"
    )
    return told


def test_a_printed_table_is_a_table_event_only_when_a_table_was_asked_for() -> None:
    asked = {"code": "def show_table(h, r): ...\nprint('n value')", "stdout": "n v\n1 2\n2 4"}
    tables = [data for kind, data in _shaped(asked) if kind == "table"]
    assert tables == [
        {"columns": ["n", "v"], "rows": [["1", "2"], ["2", "4"]], "title": "printed table"}
    ]
    not_asked = {**asked, "code": "print('n value')"}
    assert [kind for kind, _ in _shaped(not_asked)] == ["code_block"]


def test_empty_searches_are_said_and_answered_i_dont_know() -> None:
    docs, repos = DocumentsV1(), GithubTrendingV2()
    assert docs.empty({"hits": [{"source": "a.md", "excerpt": "x"}]}) is None
    assert repos.empty(REPOS) is None
    nothing = docs.empty({"hits": []})
    assert nothing is not None and "none of your documents" in nothing
    state: dict[str, Any] = {
        "plan": [{"description": "search", "tool": "documents"}],
        "findings": [{"index": 0, "text": "No document matched", "empty": nothing}],
    }
    answer = known_answer(state)  # type: ignore[arg-type]
    assert answer is not None and answer.startswith("I don't know: none of your documents")
    state["findings"].append({"index": 1, "text": "Paris"})
    state["plan"].append({"description": "recall", "tool": "none"})
    assert known_answer(state) is None  # type: ignore[arg-type]


def test_a_memory_request_is_answered_with_its_note() -> None:
    state: dict[str, Any] = {"plan": [], "recalled": {"memory_note": "Saved: colour = green."}}
    assert known_answer(state) == "Saved: colour = green."  # type: ignore[arg-type]


def test_code_that_shows_nothing_is_retried_and_code_that_prints_is_not() -> None:
    adapter = PythonExecV1()
    silent = {"code": "def f():\n    return 1", "stdout": "", "images": 0, "tables": []}
    reason = adapter.failed(silent)
    assert reason is not None and "printed nothing" in reason and "def f()" in reason
    assert adapter.failed({**silent, "stdout": "1\n"}) is None
    assert adapter.failed({**silent, "images": 1}) is None
    assert adapter.failed({**silent, "killed": "wall clock"}) is None  # a limit: no retry
    raised = adapter.failed({**silent, "error": "NameError: x"})
    assert raised is not None and "NameError" in raised


def test_the_code_prompt_shows_rows_in_use_with_the_number_the_question_names() -> None:
    earlier = ({"step": "list", "tool": "github_trending", "result": REPOS},)
    prelude, told = _prelude(earlier, "Plot the forks of these repositories")
    assert "rows = data[0]['result']['repos']" in prelude
    assert "names = [r['full_name'] for r in rows]; values = [r['forks'] for r in rows]" in told
    _, told = _prelude(earlier, "Plot them")
    assert "values = [r['stars'] for r in rows]" in told


def test_every_step_refused_or_empty_is_answered_with_why() -> None:
    state: dict[str, Any] = {
        "plan": [
            {"description": "list", "tool": "calendar"},
            {"description": "s", "tool": "documents"},
        ],
        "findings": [
            {"index": 0, "text": "(not done)", "refused": "I can't do that: no read:calendar."},
            {"index": 1, "text": "No document matched", "empty": "none of your documents."},
        ],
    }
    answer = known_answer(state)  # type: ignore[arg-type]
    assert answer == "I can't do that: no read:calendar. I don't know: none of your documents."
