"""Deterministic routing: unambiguous questions are planned by their words, others by the model."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.memory import InMemorySaver

from core.settings import LLMSettings
from graphs.context import RunContext
from graphs.graph import build_graph
from graphs.routing import follow_up, grounded, route
from graphs.state import PlanStep
from tests.fakes.scripted import scripted


@pytest.mark.parametrize(
    ("question", "tools"),
    [
        ("What's hot in Rust on GitHub this week?", ["github_trending"]),
        ("Am I free on Friday afternoon?", ["calendar"]),
        ("Book a call with the auditors on Monday at 9", ["calendar"]),
        ("What does the travel policy say about taxis?", ["documents"]),
        ("Calculate the compound interest on 1000 at 5% over 10 years", ["python_exec"]),
        ("Draw a histogram of these ages: 23, 35, 41, 29", ["python_exec"]),
        (
            "Chart the forks of this month's trending Go repositories",
            ["github_trending", "python_exec"],
        ),
        ("Why do onions make people cry?", None),  # no tool's words: the model decides
        ("Which Python documentation covers asyncio?", None),  # two families: the model
        ("Plot my meetings per day this week", None),  # calendar and code: the model
    ],
)
def test_questions_route_by_their_words(question: str, tools: list[str] | None) -> None:
    steps = route(question)
    assert (None if steps is None else [s.tool for s in steps]) == tools


@pytest.mark.asyncio
@pytest.mark.parametrize("rules", [True, False])
async def test_the_planner_asks_the_model_only_when_the_rules_do_not_settle_the_tool(
    rules: bool,
) -> None:
    model_plan = '{"steps": [{"description": "Answer from knowledge", "tool": "none"}]}'
    replies = ["finding", "answer"] if rules else [model_plan, "finding", "answer"]
    ctx = RunContext(
        chat_model=scripted(*replies),
        thread_id="t",
        llm=LLMSettings(rule_routing=rules),
    )
    config: Any = {"configurable": {"thread_id": "t"}}
    question = "What does the travel policy say about taxis?"
    events = [
        e
        async for e in build_graph(InMemorySaver()).astream(
            {"messages": [HumanMessage(question)]}, config, context=ctx, stream_mode="custom"
        )
    ]
    plan = next(e["data"]["steps"] for e in events if e["type"] == "plan")
    assert [s["tool"] for s in plan] == (["documents"] if rules else ["none"])


@pytest.mark.parametrize(
    ("question", "earlier", "tool"),
    [
        ("Which of them has the fewest stars?", ["github_trending"], "github_trending"),
        ("Now divide that result by 6.", ["python_exec"], "python_exec"),
        (
            "How many stars does the second one have?",
            ["none", "github_trending"],
            "github_trending",
        ),
        ("Why is the sky blue?", ["github_trending"], None),  # points back to nothing
        ("Which of them?", [], None),  # a first turn
        ("Which of them?", ["github_trending", "python_exec"], None),  # two tools: ambiguous
        ("Plot those.", ["github_trending"], None),  # names a tool: the word rules decide
    ],
)
def test_a_follow_up_pointing_back_goes_to_the_previous_turns_one_tool(
    question: str, earlier: list[str], tool: str | None
) -> None:
    plan = follow_up(question, [{"description": "x", "tool": t} for t in earlier])
    assert (plan[0].tool if plan else None) == tool


@pytest.mark.parametrize(
    ("question", "tool"),
    [
        ("Which planet is the largest in our solar system?", "none"),
        ("At what temperature does water boil at sea level?", "none"),
        ("How many primes are there below 10000?", "python_exec"),  # a number to compute with
        ("Can you write a program that prints a haiku?", "python_exec"),  # the code tool's words
        ("Wait", "python_exec"),  # an instruction, not a question: not judged
    ],
)
def test_a_code_step_for_a_question_with_nothing_to_compute_is_model_only(
    question: str, tool: str
) -> None:
    assert grounded(PlanStep(description="x", tool="python_exec"), question).tool == tool
    assert grounded(PlanStep(description="x", tool="calendar"), question).tool == "calendar"
