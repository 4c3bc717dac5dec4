"""The memory router's cheap rules and its embedding fallback."""

from __future__ import annotations

import pytest

from core.embeddings import MiniLMEmbedder
from memory.router import fields_by_rule, is_personal, is_statement, select_fields

PROFILE = {
    "diet": "vegetarian, allergic to peanuts",
    "home_city": "Lisbon",
    "preferred_language": "Rust",
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("What is A plus B?", False),
        ("hi", False),
        ("List trending Rust repositories", False),
        ("I moved to Lisbon last spring and work remotely", True),
        ("Our team deploys on Thursdays after stand-up", True),
    ],
)
def test_statements_are_told_from_questions(text: str, expected: bool) -> None:
    assert is_statement(text) is expected


def test_fields_by_rule_match_named_fields() -> None:
    assert fields_by_rule("Which city is my home?", PROFILE) == ["home_city"]
    assert fields_by_rule("What is my preferred language?", PROFILE) == ["preferred_language"]
    assert fields_by_rule("Why is the sky blue?", PROFILE) == []


@pytest.mark.asyncio
async def test_impersonal_questions_never_select_a_field() -> None:
    assert not is_personal("What does the diet of pandas consist of?")
    assert await select_fields("What does the diet of pandas consist of?", PROFILE, None) == []


@pytest.mark.asyncio
async def test_the_embedding_model_decides_when_rules_are_unsure() -> None:
    embedder = MiniLMEmbedder()
    chosen = await select_fields("Can I eat satay chicken at the party?", PROFILE, embedder)
    assert chosen == ["diet"]
    assert await select_fields("Where do I live?", PROFILE, embedder) == ["home_city"]
    assert await select_fields("How do I reverse a list?", PROFILE, embedder) == []
