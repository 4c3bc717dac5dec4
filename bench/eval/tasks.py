"""The evaluation's task format: turns, caller, corpus, calendar seed and checks (YAML files).

A task is one conversation of one caller. Expected values come from the run's own data where
the data can give them (a tool's result or a held call's arguments, addressed by a path) or
are computed by the harness (``computed``); a literal ``text`` is for what only the question
or the corpus states, and a corpus literal is checked against the corpus files at load time.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

HERE = Path(__file__).parent
TASKS_DIR = HERE / "tasks"
CORPUS_DIR = HERE / "corpus"

Scope = Literal["exec:code", "read:calendar", "write:calendar", "memory:long_term"]
Tier = Literal["free", "pro", "enterprise"]
Status = Literal["success", "error", "cancelled", "timeout", "interrupted"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Value(_Model):
    """An expected value: literal, computed, or read from the run's events by a path.

    Paths are dot-separated: a key, an index (``0``), ``*`` (every item), ``first:N``,
    ``max:FIELD`` / ``min:FIELD`` (the item with the largest/smallest field). ``as`` says how
    to look for it in the answer: ``text`` (case-insensitive substring), ``name`` (a repository
    ``owner/name`` or its ``name`` alone), ``number`` (a number in the answer, ``1,200`` and
    ``1.2k`` included).
    """

    text: str | None = None
    computed: str | None = None
    tool_result: str | None = None  # tool name: a server (``calendar``) or ``server.tool``
    confirmation: str | None = None  # a held call's tool, its ``args`` addressed by path
    path: str = ""
    as_: Literal["text", "name", "number"] = Field("text", alias="as")
    # Only this turn's events (1-based), e.g. the list a follow-up refers to; default: this
    # turn's, then the earlier turns' from the latest.
    turn: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _one_source(self) -> Value:
        sources = [self.text, self.computed, self.tool_result, self.confirmation]
        if sum(s is not None for s in sources) != 1:
            raise ValueError("a value has exactly one of text, computed, tool_result, confirmation")
        if (self.tool_result is not None or self.confirmation is not None) and not self.path:
            raise ValueError("a tool_result or confirmation value needs a path")
        return self

    def describe(self) -> str:
        """How the value is named in a failure reason."""
        if self.text is not None:
            return repr(self.text)
        if self.computed is not None:
            return f"computed {self.computed}"
        if self.tool_result is not None:
            return f"{self.tool_result} result {self.path}"
        return f"{self.confirmation} held args {self.path}"


class Answer(_Model):
    """Checks on the answer text (the turn's streamed ``text_delta``)."""

    contains: list[Value] = Field(default_factory=list)  # every one must appear
    contains_any: list[Value] = Field(default_factory=list)  # at least one must appear
    not_contains: list[Value] = Field(default_factory=list)
    says: Literal["refusal", "unknown"] | None = None
    # With ``contains``: at most ``max_others`` other members of this set may be named, so
    # "which of those has the most forks?" is not passed by listing every repository.
    alone_among: Value | None = None
    max_others: int = 1


class ArgCheck(_Model):
    """A check on one argument of a held call."""

    contains: str | None = None
    equals: str | int | float | None = None
    day_offset: int | None = None  # a date-time on today (UTC) + N days
    hour: int | None = None  # ... at this hour (UTC)
    minute: int | None = None


class Confirm(_Model):
    """The confirmation a turn must ask for, and the harness's decision."""

    tool: str
    approve: bool = True
    args: dict[str, ArgCheck] = Field(default_factory=dict)


class Turn(_Model):
    """One message of the conversation and what its run(s) must show."""

    message: str = Field(min_length=1)
    new_thread: bool = False  # the first turn always opens a thread
    tools: list[str] | None = None  # exactly these tools attempted ([] = none); None: unchecked
    status: Status = "success"
    events: list[str] = Field(default_factory=list)  # event types that must appear
    confirm: Confirm | None = None  # expected; other confirmations are approved
    answer: Answer = Field(default_factory=Answer)


class Meeting(_Model):
    """A calendar event the harness writes for the task's tenant before the task."""

    title: str
    day_offset: int
    hour: int
    minute: int = 0
    duration_min: int = 30


class Task(_Model):
    """One evaluation task."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    category: str
    scopes: list[Scope] = Field(default_factory=list)
    tier: Tier = "free"
    tenant: str | None = None  # default: a tenant of its own, ``eval-<id>``
    corpus: list[str] = Field(default_factory=list)  # files under bench/eval/corpus/
    calendar: list[Meeting] = Field(default_factory=list)
    turns: list[Turn] = Field(min_length=1)
    note: str | None = None

    @property
    def tenant_name(self) -> str:
        """The tenant the task runs as."""
        return self.tenant or f"eval-{self.id}"

    @property
    def user(self) -> str:
        """The user the task runs as: one per task, so quotas and memory do not mix."""
        return f"eval-{self.id}"


class TaskFile(_Model):
    """A YAML file of tasks."""

    tasks: list[Task]


def _normal(text: str) -> str:
    return re.sub(r"\W+", " ", text.lower()).strip()


def _spaced(text: str) -> str:
    return " ".join(text.lower().split())


def planner_examples() -> list[str]:
    """The questions of the planner prompt's few-shot examples (never part of the set)."""
    from graphs.prompts import PLANNER

    return [m.group(1) for m in re.finditer(r"^Q: (.+)$", PLANNER, re.M)]


def validate(tasks: list[Task], corpus_dir: Path = CORPUS_DIR) -> list[str]:
    """Problems with a set: duplicate ids, planner examples, corpus literals not in the corpus."""
    problems: list[str] = []
    seen: set[str] = set()
    examples = {_normal(q) for q in planner_examples()}
    for task in tasks:
        if task.id in seen:
            problems.append(f"{task.id}: duplicate id")
        seen.add(task.id)
        for path in task.corpus:
            if not (corpus_dir / path).is_file():
                problems.append(f"{task.id}: corpus file {path} not found")
        corpus = " ".join(
            _spaced((corpus_dir / p).read_text()) for p in task.corpus if (corpus_dir / p).is_file()
        )
        for turn in task.turns:
            problems.extend(_uncomputable(task.id, turn))
            if _normal(turn.message) in examples:
                problems.append(f"{task.id}: {turn.message!r} is a planner prompt example")
            if task.category != "documents":
                continue
            for value in turn.answer.contains + turn.answer.contains_any:
                if value.text is not None and _spaced(value.text) not in corpus:
                    problems.append(f"{task.id}: {value.text!r} is not in the task's corpus")
    return problems


def _uncomputable(task_id: str, turn: Turn) -> list[str]:
    from bench.eval.grade import compute

    problems = []
    answer = turn.answer
    for value in answer.contains + answer.contains_any + answer.not_contains:
        if value.computed is not None:
            try:
                compute(value.computed)
            except Exception as exc:  # noqa: BLE001 (any failure makes the task unusable)
                problems.append(f"{task_id}: cannot compute {value.computed!r}: {exc!r}")
    return problems


def load(
    paths: list[Path] | None = None,
    only: list[str] | None = None,
    categories: list[str] | None = None,
) -> list[Task]:
    """Tasks from ``paths`` (default: every ``tasks/*.yaml``), filtered by id or category.

    ``only`` entries match an id exactly or as a prefix ending in ``*``.
    """
    files = paths or sorted(TASKS_DIR.glob("*.yaml"))
    tasks: list[Task] = []
    for file in files:
        raw = yaml.safe_load(file.read_text())
        tasks.extend(TaskFile.model_validate(raw).tasks)
    if only:
        tasks = [t for t in tasks if any(_matches(t.id, pattern) for pattern in only)]
    if categories:
        tasks = [t for t in tasks if t.category in categories]
    return tasks


def _matches(task_id: str, pattern: str) -> bool:
    if pattern.endswith("*"):
        return task_id.startswith(pattern[:-1])
    return task_id == pattern
