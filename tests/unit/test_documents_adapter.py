"""documents 2.x adapter: hits noted with their citation; an empty search said as in 1.x."""

from __future__ import annotations

from tools.pipeline import ADAPTERS
from tools.servers.documents.v1.adapter import DocumentsV1
from tools.servers.documents.v2.adapter import DocumentsV2

HITS = {
    "query": "vacation",
    "mode": "hybrid",
    "hits": [
        {"document": "benefits.pdf", "page": 2, "excerpt": "28 days of paid vacation"},
        {"document": "policy.md", "page": None, "excerpt": "ask your manager first"},
    ],
}


def test_each_hit_is_noted_after_its_name_and_page() -> None:
    assert DocumentsV2().note(HITS) == (
        "- [benefits.pdf p.2] 28 days of paid vacation\n- [policy.md] ask your manager first"
    )


def test_an_empty_search_is_said_as_none_of_your_documents_like_v1() -> None:
    v1, v2 = DocumentsV1(), DocumentsV2()
    empty = {"query": "x", "mode": "hybrid", "hits": []}
    said = v2.empty(empty)
    assert said is not None and said.startswith("none of your documents mention this")
    assert said == v1.empty({"hits": []})
    assert v2.note(empty) == f"No document matched: {said}"
    assert v2.empty(HITS) is None


def test_the_pipeline_registers_v2_beside_v1() -> None:
    assert isinstance(ADAPTERS[("documents", "2")], DocumentsV2)
    assert type(ADAPTERS[("documents", "1")]) is DocumentsV1
