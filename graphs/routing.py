"""Deterministic routing: a question whose tool is unambiguous gets its plan by rules.

A small model picks the wrong tool for about one question in six, and it copies its prompt's
examples when unsure. Where the words settle the tool (a calendar word and nothing else, a
GitHub word and nothing else, a chart of GitHub data, …) the plan is made here without the
model; anything ambiguous, or naming no tool at all, goes to the model planner. The rules
are about vocabulary, not about particular questions: a company's leave and expense words
name its own policies (documents), never general knowledge.
"""

from __future__ import annotations

import re

from graphs.state import PlanStep

_FAMILIES: dict[str, re.Pattern[str]] = {
    "github_trending": re.compile(
        r"\b(github|trending|repos|repository|repositories|open[- ]source projects?)\b", re.I
    ),
    "calendar": re.compile(
        r"\b(calendar|meetings?|appointments?|agenda|schedule[sd]?|am i (free|busy)"
        r"|book (a|an|me)\b|set up (a|an)\b)",
        re.I,
    ),
    "documents": re.compile(
        r"\b(documents?|docs|my files|our files|notes|polic(y|ies)|handbook|guidelines?"
        r"|onboarding|knowledge base|wiki|manual"
        # what a company's own policies settle: leave, expenses, benefits
        r"|vacation|paid time off|pto|(parental|sick|annual|unpaid) leave|sabbatical"
        r"|expenses?|reimburs\w*|per diem|mileage|receipts?|benefits)\b",
        re.I,
    ),
    "python_exec": re.compile(
        r"\b(plot|chart|graph|histogram|draw|compute|calculate|table of|make a table"
        r"|(use|run|with|in|write)( some| and run)? python|python (code|to)|code)\b",
        re.I,
    ),
}
_CHART = re.compile(r"\b(plot|chart|graph|histogram|draw|compute|calculate|table)\b", re.I)


def families(question: str) -> set[str]:
    """The tools whose vocabulary ``question`` uses."""
    return {tool for tool, words in _FAMILIES.items() if words.search(question)}


def route(question: str) -> list[PlanStep] | None:
    """The plan for an unambiguous question, else ``None`` (the model plans)."""
    found = families(question)
    text = question.strip()[:160]
    if found == {"github_trending", "python_exec"} and _CHART.search(question):
        return [
            PlanStep(description=f"Find the repositories for: {text}", tool="github_trending"),
            PlanStep(description=f"Run Python on them for: {text}", tool="python_exec"),
        ]
    if len(found) != 1:
        return None
    (tool,) = found
    return [PlanStep(description=text, tool=tool)]


_BACK = re.compile(
    r"\b(of (them|those|these)|them|those|these|that (list|one|result|answer|number|value|table"
    r"|chart|figure)|the (first|second|third|fourth|fifth|last|top|next) one)\b",
    re.I,
)


def follow_up(question: str, earlier: list[dict[str, str]]) -> list[PlanStep] | None:
    """The plan of a follow-up that points back and names no tool: the previous turn's tool.

    "Which of them…", "divide that result…": the one tool the thread's previous turn used
    (``None`` when it used none or several, or the question names a tool's words).

    Asked "Which of them has the fewest stars?", a small model plans a document search.
    """
    tools = {s["tool"] for s in earlier if s.get("tool", "none") != "none"}
    if families(question) or not _BACK.search(question) or len(tools) != 1:
        return None
    return [PlanStep(description=question.strip()[:160], tool=tools.pop())]


_COMPUTE = re.compile(
    r"\d|[(=]|\b(python|code|program|script|compute|calculate|plot|chart|graph|table|draw|run)\b",
    re.I,
)


def grounded(step: PlanStep, question: str) -> PlanStep:
    """``step``, unless it runs code for a question with nothing to compute: then model-only.

    A small model plans Python for "Which planet is the largest?" or "At what temperature
    does water boil?"; a question for code names numbers or the code tool's words. Only
    questions (ending in "?") are judged: an instruction may be for code in any words.
    """
    if step.tool != "python_exec" or not question.rstrip().endswith("?"):
        return step  # an instruction ("run this", "wait") may well be for code
    if _COMPUTE.search(question):
        return step
    return PlanStep(description=step.description, tool="none")
