"""Answers settled by a tool's own data (``Adapter.answer``), and document passages."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.adapter import Step
from tools.servers.calendar.v1.adapter import CalendarV1
from tools.servers.documents.passage import passage
from tools.servers.github_trending.wording import picked
from tools.servers.python_exec.v1.adapter import PythonExecV1, without_function

REPOS = {
    "source": "snapshot",
    "repos": [
        {"full_name": "a/one", "stars": 300, "forks": 10, "url": "https://github.com/a/one"},
        {"full_name": "b/two", "stars": 500, "forks": 5, "url": "https://github.com/b/two"},
        {"full_name": "c/three", "stars": 100, "forks": 40, "url": "https://github.com/c/three"},
    ],
}


def _step(question: str, tool: str = "x") -> Step:
    return Step(tool=tool, description=question, question=question, index=0)


@pytest.mark.parametrize(
    ("question", "name"),
    [
        ("Which of them has the fewest stars?", "c/three"),
        ("Which one has the most stars?", "b/two"),
        ("Which repository is the most forked?", "c/three"),
        ("How many stars does the top trending Go repository have?", "a/one"),
        ("Send me the link of the repository leading the list.", "a/one"),
        ("How many stars does the second one on that list have?", "b/two"),
        ("Give me the fork count of the number one trending project.", "a/one"),
    ],
)
def test_a_question_that_picks_one_repository_is_answered_with_it(question: str, name: str) -> None:
    said = picked(REPOS, question)
    assert said is not None and said.startswith(f"**{name}**")
    others = {r["full_name"] for r in REPOS["repos"]} - {name}
    assert not any(other in said for other in others)


@pytest.mark.parametrize(
    "question",
    [
        "List the three top trending TypeScript repositories.",
        "What are the trending Go repositories this week?",
        "Which is the fifth one?",  # only three listed
        "Which is the most popular one?",  # no figure named, no position
    ],
)
def test_a_question_that_picks_none_is_left_to_the_model(question: str) -> None:
    assert picked(REPOS, question) is None


def test_a_listing_question_is_answered_with_every_event() -> None:
    events = {
        "events": [
            {
                "title": "Dentist appointment",
                "starts_at": "2026-12-04T08:00:00+00:00",
                "ends_at": "2026-12-04T08:30:00+00:00",
            },
            {
                "title": "Lunch with Marta",
                "starts_at": "2026-12-04T12:30:00+00:00",
                "ends_at": "2026-12-04T13:00:00+00:00",
            },
        ]
    }
    said = CalendarV1().answer(events, _step("Which meetings do I have tomorrow?"))
    assert said is not None and said.startswith("You have 2 events:")
    assert "Dentist appointment" in said and "Lunch with Marta" in said
    assert CalendarV1().answer({"events": []}, _step("List my meetings for this week.")) == (
        "Nothing is on your calendar in that window."
    )
    assert CalendarV1().answer(events, _step("Am I free tomorrow at 3pm?")) is None
    assert CalendarV1().answer(events, _step("At what time is my planning meeting?")) is None


def test_a_short_printed_value_is_the_answer_unless_a_chart_or_table_was_asked() -> None:
    adapter = PythonExecV1()
    ran = {"stdout": "296.0\n", "error": None, "images": [], "tables": []}
    assert adapter.answer(ran, _step("Divide that by 6.")) == (
        "The result is 296.0 (computed with Python)."
    )
    worded = {**ran, "stdout": "Primes below 10000: 1229"}
    assert adapter.answer(worded, _step("Count the primes")) == "Primes below 10000: 1229"
    assert adapter.answer(ran, _step("Make a table of it")) is None
    assert adapter.answer({**ran, "error": "NameError"}, _step("Divide")) is None
    assert adapter.answer({**ran, "stdout": "x" * 400}, _step("Divide")) is None
    assert adapter.answer({**ran, "stdout": ""}, _step("Divide")) is None


def test_the_models_own_show_table_is_dropped_and_its_calls_kept() -> None:
    code = "import csv\n@wrap\ndef show_table(h, r):\n    pass\nrows = [1]\nshow_table(['a'], rows)"
    assert without_function(code, "show_table") == "import csv\nrows = [1]\nshow_table(['a'], rows)"
    assert without_function("def f(:", "show_table") == "def f(:"


CORPUS = Path(__file__).parents[2] / "bench" / "eval" / "corpus"


@pytest.mark.parametrize(
    ("name", "query", "sentence"),
    [
        ("onboarding-guide.md", "staff wifi network name", "called Tidewater-Staff;"),
        ("onboarding-guide.md", "Where do I pick up my laptop?", "room B-214."),
        ("expense-policy.md", "deadline to submit receipts", "within 21 days of the expense."),
    ],
)
def test_a_passage_holds_the_best_matching_sentence_whole(
    name: str, query: str, sentence: str
) -> None:
    body = (CORPUS / name).read_text()
    excerpt = passage(body, query, size=200)
    assert sentence in excerpt
    assert len(excerpt) < len(body)


def test_a_passage_of_a_chunk_without_a_match_is_its_start() -> None:
    assert passage("First line.\nSecond line. Third.", "zebra", size=5) == "First line."
    assert passage("", "zebra") == ""
