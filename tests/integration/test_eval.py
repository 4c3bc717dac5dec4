"""`keel eval`'s harness graded on the scripted model: a right run passes, a wrong one fails
with the reason that names what was wrong (answer, tool, status), and the shipped set is valid.

The API is real (uvicorn, Postgres, the github server answering from its snapshot); only the
model is scripted: a plan, one step text per step, the answer.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.eval import report
from bench.eval.grade import _check_answer, appears
from bench.eval.runner import TaskResult, regrade, run_task
from bench.eval.stack import Stack
from bench.eval.tasks import Answer, Task, load, planner_examples, validate
from tests.conftest import LiveServer
from tests.fakes.openai_server import FakeOpenAI

SNAPSHOT = Path(__file__).parents[2] / "tools/servers/github_trending/snapshot.json"
REPOS = json.loads(SNAPSHOT.read_text())["languages"]["go"]
MOST_FORKS = max(REPOS, key=lambda r: r["forks"])


def _plan(tool: str) -> str:
    return json.dumps({"steps": [{"description": "List trending Go repositories", "tool": tool}]})


def _task(**turn: Any) -> Task:
    return Task.model_validate(
        {
            "id": "go-top",
            "category": "github",
            "turns": [
                {
                    # A question the tool's data does not settle by rule: the model answers.
                    "message": "Tell me about the trending Go repositories and their stars.",
                    "tools": ["github_trending"],
                    "answer": {
                        "contains": [
                            {
                                "tool_result": "github_trending",
                                "path": "repos.0.full_name",
                                "as": "name",
                            },
                            {
                                "tool_result": "github_trending",
                                "path": "repos.0.stars",
                                "as": "number",
                            },
                        ]
                    },
                    **turn,
                }
            ],
        }
    )


@pytest.fixture
def stack(live: LiveServer) -> Iterator[Stack]:
    yield Stack(live.url, live.settings.auth, live.settings.database.url, "fake")


def test_a_right_answer_from_the_tool_data_passes(stack: Stack, fake_llm: FakeOpenAI) -> None:
    top = REPOS[0]
    answer = f"The top one is {top['full_name']} with {top['stars']:,} stars."
    fake_llm.script.extend([_plan("github_trending"), "Listed.", answer])
    result = run_task(stack, _task())
    assert (result.passed, result.reasons) == (True, [])
    [turn] = result.turns
    assert (turn.status, turn.tools, turn.answer) == ("success", ["github_trending"], answer)
    assert turn.tokens > 0 and turn.seconds > 0
    assert set(turn.phases) == {"plan", "args", "tool", "step", "answer"}
    assert sum(turn.phases.values()) <= turn.seconds
    assert report.line(result).startswith("PASS github")


def test_a_wrong_answer_fails_naming_the_missing_value(stack: Stack, fake_llm: FakeOpenAI) -> None:
    wrong = REPOS[1]
    answer = f"The top one is {wrong['full_name']} with {wrong['stars']} stars."
    fake_llm.script.extend([_plan("github_trending"), "Listed.", answer])
    result = run_task(stack, _task())
    assert not result.passed
    assert result.reasons == [
        f"answer lacks {REPOS[0]['full_name']!r} (github_trending result repos.0.full_name):"
        f" {answer!r}",
        f"answer lacks {REPOS[0]['stars']!r} (github_trending result repos.0.stars): {answer!r}",
    ]


def test_the_wrong_tool_fails_and_leaves_nothing_to_check_against(
    stack: Stack, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script.extend([_plan("none"), "I recall some.", "golang/go has 128,000 stars."])
    result = run_task(stack, _task())
    assert result.reasons == [
        "tools none, expected ['github_trending']",
        "no github_trending result repos.0.full_name in the run's events to check against",
        "no github_trending result repos.0.stars in the run's events to check against",
    ]


def test_a_run_ending_in_error_fails_with_its_error(stack: Stack, fake_llm: FakeOpenAI) -> None:
    fake_llm.script.extend(["!status 500"] * 4)
    result = run_task(stack, _task(tools=None, answer={}))
    assert not result.passed and result.errored
    [reason] = result.reasons
    assert reason.startswith("status error, expected success (")


def _follow_up(pin: int | None) -> Task:
    def value(path: str) -> dict[str, Any]:
        return {"tool_result": "github_trending", "path": path, "as": "name", "turn": pin}

    return Task.model_validate(
        {
            "id": "go-follow-up",
            "category": "followup",
            "turns": [
                {"message": "What Go repositories are popular this week?"},
                {
                    "message": "Of those, which one is forked more than the others?",
                    "answer": {
                        "contains": [value("repos.max:forks.full_name")],
                        "alone_among": value("repos.*.full_name"),
                    },
                },
            ],
        }
    )


def test_a_follow_up_is_graded_from_the_turn_it_refers_to(
    stack: Stack, fake_llm: FakeOpenAI
) -> None:
    names = ", ".join(r["full_name"] for r in REPOS)
    python = json.dumps(
        {"steps": [{"description": "List trending Python repositories", "tool": "github_trending"}]}
    )
    right = f"{MOST_FORKS['full_name']} has the most forks."
    # The second turn fetches Python repositories: the check still reads turn 1's Go list.
    fake_llm.script.extend([_plan("github_trending"), "Listed.", names])
    fake_llm.script.extend([python, "Listed again.", right])
    passed = run_task(stack, _follow_up(pin=1))
    assert (passed.passed, passed.reasons) == (True, [])
    assert passed.turns[0].thread_id == passed.turns[1].thread_id

    events = [{"turn": n, **e} for n, t in enumerate(passed.turns, 1) for e in t.events]
    assert regrade(_follow_up(pin=1), passed, events).reasons == []
    python_top = max(
        json.loads(SNAPSHOT.read_text())["languages"]["python"], key=lambda r: r["forks"]
    )
    unpinned = regrade(_follow_up(pin=None), passed, events)
    assert unpinned.reasons[0].startswith(
        f"turn 2: answer lacks {python_top['full_name']!r} (github_trending result"
    )

    fake_llm.script.extend([_plan("github_trending"), "Listed.", names])
    fake_llm.script.extend([_plan("none"), "From before.", f"All of them: {names}."])
    listed_all = run_task(stack, _follow_up(pin=1))
    assert len(listed_all.reasons) == 1
    assert listed_all.reasons[0].startswith("turn 2: answer also names ")


def test_report_writes_results_and_markdown(tmp_path: Path) -> None:
    results = [
        TaskResult("a", "github", True, 2.0, 10, []),
        TaskResult("b", "memory", False, 3.0, 20, ["turn 2: answer lacks 'teal'"]),
    ]
    meta = report.Meta(
        "t0",
        "t1",
        5.0,
        "abc",
        "fake",
        "url",
        "m",
        (0.1, 0.2, 0.3),
        (0.4, 0.5, 0.6),
        ["python -m bench.eval"],
    )
    report.write(results, meta, tmp_path)
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["summary"]["overall"]["passed"] == 1
    assert doc["summary"]["categories"]["memory"]["pass_rate"] == 0.0
    md = (tmp_path / "RESULTS.md").read_text()
    assert "**1/2 tasks pass (50.0 %)**" in md and "turn 2: answer lacks 'teal'" in md
    assert "- answer wrong or incomplete: 1 (b)" in md
    again, meta_again = report.read(tmp_path / "results.json")
    assert (again, meta_again) == (results, meta)


def test_the_shipped_set_is_valid_and_covers_every_category() -> None:
    tasks = load()
    assert validate(tasks) == []
    assert len(tasks) >= 40
    assert {t.category for t in tasks} == {
        "github",
        "compute",
        "charts",
        "calendar",
        "documents",
        "memory",
        "no_tool",
        "followup",
        "missing_scope",
        "unknown",
    }
    examples = {q.lower() for q in planner_examples()}
    assert len(examples) >= 5
    assert not examples & {turn.message.lower() for t in tasks for turn in t.turns}
    fresh = load(sorted((Path(__file__).parents[2] / "bench/eval/fresh").glob("*.yaml")))
    assert validate(fresh) == [] and len(fresh) >= 15
    assert not {t.id for t in fresh} & {t.id for t in tasks}
    messages = {turn.message.lower() for t in tasks for turn in t.turns}
    asked = [[turn.message.lower() for turn in t.turns] for t in fresh]
    assert not examples & {m for turns in asked for m in turns}
    assert not [turns for turns in asked if turns[0] in messages]  # each opens with a new question


def test_keel_eval_runs_bench_eval_from_the_checkout(tmp_path: Path) -> None:
    keel = Path(sys.executable).parent / "keel"
    out = subprocess.run(
        [str(keel), "eval", "--list", "--category", "memory"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert [line.split()[1] for line in out.stdout.splitlines()] == [
        t.id for t in load(categories=["memory"])
    ]


def test_validate_refuses_planner_examples_and_literals_not_in_the_corpus() -> None:
    example = planner_examples()[0]
    tasks = [
        Task.model_validate(
            {"id": "copied", "category": "github", "turns": [{"message": example}]}
        ),
        Task.model_validate(
            {
                "id": "made-up",
                "category": "documents",
                "corpus": ["vacation-policy.md"],
                "turns": [
                    {"message": "How many days?", "answer": {"contains": [{"text": "31 days"}]}}
                ],
            }
        ),
        Task.model_validate(
            {
                "id": "typo",
                "category": "compute",
                "turns": [{"message": "Sum?", "answer": {"contains": [{"computed": "summ([1])"}]}}],
            }
        ),
    ]
    assert validate(tasks) == [
        f"copied: {example!r} is a planner prompt example",
        "made-up: '31 days' is not in the task's corpus",
        "typo: cannot compute 'summ([1])': NameError(\"name 'summ' is not defined\")",
    ]


@pytest.mark.parametrize(
    ("answer", "value", "as_", "found"),
    [
        ("It has 1,266,871.", 4817 * 263, "number", True),
        ("About 150k stars.", 150000, "number", True),
        ("About 150k stars.", 151000, "number", False),
        ("The balance is 4002.58 euros.", 4002.58, "number", True),
        ("The balance is 4002.6 euros.", 4002.58, "number", True),
        ("The balance is 4003 euros.", 4002.58, "number", True),
        ("The balance is 4002 euros.", 4002.58, "number", False),
        ("Top: `astral-sh/ruff`.", "astral-sh/ruff", "name", True),
        ("Top: ruff-lsp.", "astral-sh/ruff", "name", False),
        ("The symbol is Au.", "Au", "name", True),
        ("It is because of gold.", "Au", "name", False),
    ],
)
def test_values_are_found_as_written_or_rounded(
    answer: str, value: Any, as_: str, found: bool
) -> None:
    assert appears(answer, value, as_) is found


@pytest.mark.parametrize(
    ("says", "answer", "passes"),
    [
        ("refusal", "You do not have permission to run code (scope exec:code).", True),
        ("refusal", "I don't have access to your calendar.", True),
        ("refusal", "The module is unable to find python_exec.", False),
        ("unknown", "I don't know the name of your manager's cat.", True),
        ("unknown", "We cannot determine it from the given text.", True),
        ("unknown", "Jack", False),
    ],
)
def test_refusals_and_admissions_are_recognised(says: str, answer: str, passes: bool) -> None:
    check = Answer.model_validate({"says": says})
    assert (_check_answer(answer, check, [], []) == []) is passes
