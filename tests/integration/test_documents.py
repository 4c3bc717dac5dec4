"""Documents over HTTP: upload (Markdown, HTML, PDF), list, read, delete, refusals, quotas.

Real Postgres, real PDFs made by ``tests/pdfs.py`` (and encrypted by pypdf), the packaged
embedding model indexing in the background, and the documents-v2 MCP server searching them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.identity import Identity
from core.settings import Settings
from tests.conftest import LiveServer, make_settings
from tests.fakes.openai_server import FakeOpenAI
from tests.pdfs import encrypted, pdf
from tools.gateway import Requester, ToolGateway

PROBLEM = "application/problem+json"
WRITE = ["read:documents", "write:documents"]
POLICY = """# Travel policy

Economy class is required for flights under six hours.

Hotel stays are reimbursed up to 180 euros per night in capital cities.
"""
HANDBOOK = """<html><head><title>Handbook</title><style>p {color: red}</style>
<script>var secret = "not text";</script></head><body>
<h1>Onboarding</h1><p>New hires receive a laptop on their first day.</p>
<div><p>The security training must be completed within <b>two weeks</b>.</p></div>
</body></html>"""
REPORT_PAGES = [
    "Annual report 2026\nRevenue grew by twelve percent.",
    "Operations\nThe Lisbon warehouse opened in March.",
    "Outlook\nThe board approved a dividend of 40 cents per share.",
]


def settings(db_url: str, fake_llm: FakeOpenAI, tmp: Path) -> Settings:
    """Small limits so the refusals can be shown with small files; tiny quotas on the free tier."""
    base = make_settings(db_url, fake_llm.base_url, tmp)
    quotas = base.quotas.model_copy(
        update={"free": base.quotas.free.model_copy(update={"max_documents": 2})}
    )
    return make_settings(
        db_url,
        fake_llm.base_url,
        tmp,
        documents={
            "max_file_bytes": 200_000,
            "max_expanded_bytes": 1_000_000,
            "max_html_depth": 40,
        },
        quotas=quotas.model_dump(),
    )


@pytest.fixture(scope="module")
def live(
    db_url: str, fake_llm: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    with LiveServer(settings(db_url, fake_llm, tmp_path_factory.mktemp("keel"))) as server:
        yield server


def client(
    live: LiveServer, user: str, tenant: str, scopes: list[str], tier: str = "pro"
) -> httpx.Client:
    token = live.token(user, tenant, scopes=scopes, tier=tier)
    return httpx.Client(base_url=live.url, timeout=60, headers={"Authorization": f"Bearer {token}"})


@pytest.fixture(scope="module")
def alice(live: LiveServer) -> Iterator[httpx.Client]:
    with client(live, "alice", "acme", WRITE) as c:
        yield c


def upload(
    c: httpx.Client, name: str, data: bytes | str, mime: str = "text/plain"
) -> httpx.Response:
    body = data.encode() if isinstance(data, str) else data
    return c.post("/v1/documents", files={"file": (name, body, mime)})


def ready(c: httpx.Client, doc_id: str) -> dict[str, Any]:
    """The document once indexing is over (bounded wait)."""
    deadline = time.monotonic() + 120
    while True:
        doc: dict[str, Any] = c.get(f"/v1/documents/{doc_id}").json()
        if doc["status"] != "indexing" or time.monotonic() > deadline:
            return doc
        time.sleep(0.05)


def counts(live: LiveServer) -> tuple[int, int]:
    row = live.sql(
        "SELECT (SELECT count(*) FROM documents) AS d, (SELECT count(*) FROM document_chunks) AS c"
    )[0]
    return row["d"], row["c"]


def test_upload_markdown_html_and_pdf_index_them_with_pages(
    live: LiveServer, alice: httpx.Client
) -> None:
    md = upload(alice, "travel-policy.md", POLICY, "text/markdown")
    html = upload(alice, "handbook.html", HANDBOOK, "text/html")
    report = upload(alice, "report.pdf", pdf(REPORT_PAGES, compress=True), "application/pdf")
    for r in (md, html, report):
        assert r.status_code == 202, r.text
        assert r.json()["status"] == "indexing"
        assert r.headers["location"] == f"/v1/documents/{r.json()['id']}"
    docs = {r.json()["name"]: ready(alice, r.json()["id"]) for r in (md, html, report)}
    assert {d["status"] for d in docs.values()} == {"ready"}
    assert docs["report.pdf"]["pages"] == 3
    assert docs["report.pdf"]["kind"] == "pdf"
    assert docs["travel-policy.md"]["pages"] is None
    assert docs["handbook.html"]["uploaded_by"] == "alice"
    rows = live.sql(
        "SELECT c.page, c.body, c.embedding IS NOT NULL AS embedded FROM document_chunks c"
        " JOIN documents d ON d.id = c.document_id WHERE d.name = 'report.pdf' ORDER BY chunk"
    )
    assert [r["page"] for r in rows] == [1, 2, 3]
    assert "Lisbon warehouse" in rows[1]["body"]
    assert all(r["embedded"] for r in rows)
    html_text = live.sql(
        "SELECT string_agg(c.body, ' ') AS t FROM document_chunks c"
        " JOIN documents d ON d.id = c.document_id WHERE d.name = 'handbook.html'"
    )[0]["t"]
    assert "laptop on their first day" in html_text
    assert "secret" not in html_text and "color" not in html_text
    listed = alice.get("/v1/documents").json()
    assert sorted(d["name"] for d in listed["documents"]) == sorted(docs)
    assert listed["usage"]["documents"] == 3
    assert listed["usage"]["bytes"] == sum(d["size"] for d in docs.values())
    content = alice.get(f"/v1/documents/{docs['report.pdf']['id']}/content")
    assert content.headers["content-type"] == "application/pdf"
    assert content.content.startswith(b"%PDF-")


def test_same_bytes_again_are_recognised_and_not_stored_twice(
    live: LiveServer, alice: httpx.Client
) -> None:
    first = upload(alice, "notes.txt", "The cafeteria closes at 15:00 on Fridays.")
    assert first.status_code == 202
    before = counts(live)
    again = upload(alice, "notes.txt", "The cafeteria closes at 15:00 on Fridays.")
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["duplicate"] is True
    assert counts(live) == before


def test_documents_are_the_tenants_and_need_the_scopes(
    live: LiveServer, alice: httpx.Client
) -> None:
    doc = upload(alice, "shared.md", "Team offsite in Porto in May.").json()
    with client(live, "bob", "acme", ["read:documents"]) as bob:
        assert doc["id"] in {d["id"] for d in bob.get("/v1/documents").json()["documents"]}
        assert bob.get(f"/v1/documents/{doc['id']}").status_code == 200
        refused = upload(bob, "mine.md", "Bob cannot write.")
        assert refused.status_code == 403
        assert bob.delete(f"/v1/documents/{doc['id']}").status_code == 403
    with client(live, "eve", "globex", WRITE) as eve:
        assert eve.get("/v1/documents").json()["documents"] == []
        other = eve.get(f"/v1/documents/{doc['id']}")
        assert other.status_code == 404
        assert other.headers["content-type"] == PROBLEM
        assert eve.delete(f"/v1/documents/{doc['id']}").status_code == 404
    with client(live, "carol", "acme", []) as carol:
        assert carol.get("/v1/documents").status_code == 403


def test_delete_removes_the_document_its_chunks_and_vectors(
    live: LiveServer, alice: httpx.Client
) -> None:
    doc = ready(
        alice, upload(alice, "old-plan.md", "Plan: migrate the ledger in June.").json()["id"]
    )
    assert (
        live.sql("SELECT count(*) AS n FROM document_chunks WHERE document_id = %s", doc["id"])[0][
            "n"
        ]
        == doc["chunks"]
    )
    assert alice.delete(f"/v1/documents/{doc['id']}").status_code == 204
    assert alice.get(f"/v1/documents/{doc['id']}").status_code == 404
    left = live.sql("SELECT count(*) AS n FROM document_chunks WHERE document_id = %s", doc["id"])
    assert left[0]["n"] == 0
    assert alice.delete(f"/v1/documents/{doc['id']}").status_code == 404


NESTED = "<div>" * 500 + "deep" + "</div>" * 500
BAD: list[tuple[str, bytes, int, str, str]] = [
    ("corrupt.pdf", b"%PDF-1.4\n1 0 obj << /Type /Catalog", 422, "corrupt_pdf", "damaged"),
    ("locked.pdf", encrypted(pdf(["Top secret salaries"])), 422, "encrypted_pdf", "password"),
    ("scan.pdf", pdf(streams=[b"0 0 200 200 re f"]), 422, "no_text_layer", "no text layer"),
    (
        "bomb.pdf",
        pdf(streams=[b"BT /F1 11 Tf (" + b"A" * 3_000_000 + b") Tj ET"], compress=True),
        413,
        "document_too_large",
        "zip bomb",
    ),
    ("big.txt", b"x" * 200_001, 413, "document_too_large", "200000 bytes"),
    ("deep.html", NESTED.encode(), 422, "html_too_deep", "deeper than 40"),
    ("slides.pptx", b"PK\x03\x04 not really", 415, "unsupported_media_type", ".pptx"),
    ("archive.txt", b"\x1f\x8b\x08\x00 gzip", 415, "unsupported_media_type", "archive"),
    ("../../etc/passwd.md", b"# hi", 422, "bad_filename", "path parts"),
    ("dir\\notes.md", b"# hi", 422, "bad_filename", "path parts"),
    ("fake.pdf", b"just text pretending", 422, "corrupt_pdf", "not a PDF"),
]


@pytest.mark.parametrize(("name", "data", "status", "code", "says"), BAD, ids=[b[0] for b in BAD])
def test_bad_files_get_a_problem_and_leave_nothing_stored(
    live: LiveServer,
    alice: httpx.Client,
    name: str,
    data: bytes,
    status: int,
    code: str,
    says: str,
) -> None:
    before = counts(live)
    r = upload(alice, name, data, "application/octet-stream")
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    problem = r.json()
    assert problem["code"] == code
    assert says in problem["detail"]
    assert problem["trace_id"]
    assert counts(live) == before


def test_a_body_over_the_upload_limit_is_refused_before_it_is_read(
    live: LiveServer, alice: httpx.Client
) -> None:
    before = counts(live)
    r = upload(alice, "huge.txt", b"y" * 400_000)
    assert r.status_code == 413
    assert r.json()["code"] == "payload_too_large"
    assert counts(live) == before


def test_quota_per_tier_counts_the_tenants_documents(live: LiveServer) -> None:
    with client(live, "fred", "freeco", WRITE, tier="free") as fred:
        assert upload(fred, "one.md", "first document").status_code == 202
        assert upload(fred, "two.md", "second document").status_code == 202
        before = counts(live)
        third = upload(fred, "three.md", "third document")
        assert third.status_code == 429
        assert third.json()["limit"] == "documents"
        assert counts(live) == before
        # A new version of a file the tenant has replaces it: no extra document.
        replaced = upload(fred, "two.md", "second document, revised")
        assert replaced.status_code == 202
        names = [d["name"] for d in fred.get("/v1/documents").json()["documents"]]
        assert sorted(names) == ["one.md", "two.md"]


@pytest.mark.asyncio
async def test_documents_v2_finds_uploads_by_meaning_with_page_and_excerpt(
    live: LiveServer, alice: httpx.Client
) -> None:
    doc = upload(alice, "benefits.pdf", pdf(["Intro", "Staff get 28 days of paid vacation."]))
    ready(alice, doc.json()["id"])
    async with ToolGateway(live.settings, database_url=live.settings.database.url) as gw:
        spec = gw.resolve("research", "documents")
        assert spec.version == "2.0.0"
        who = Identity("alice", "acme", frozenset())
        out = await gw.call(
            spec, {"query": "how much holiday do employees have"}, caller=Requester(who)
        )
        top = out.result["hits"][0]
        assert (top["document"], top["page"]) == ("benefits.pdf", 2)
        assert "28 days" in top["excerpt"]
        stranger = Identity("eve", "globex", frozenset())
        nothing = await gw.call(spec, {"query": "paid vacation"}, caller=Requester(stranger))
        assert nothing.result["hits"] == []
        # The excerpt is one passage: what lies between the matched words is kept, not "...".
        text = (
            "# Travel and expense policy (Northwind Labs)\n\n## Meals\n\nOn business trips,"
            " meals are reimbursed up to 52 euros per day. Alcohol is never reimbursed.\n\n"
            "## Receipts and claims\n\nSubmit every receipt in the Ledgerly app within 21 days"
            " of the expense. Claims submitted\nlater are paid only with the finance director's"
            " approval.\n\n## Travel\n\nTrain is preferred for trips under 5 hours. Flights"
            " longer than 8 hours may be booked in\npremium economy. Any single expense above"
            " 750 euros needs the manager's approval in advance.\n"
        )
        md = upload(alice, "expenses.md", text)
        ready(alice, md.json()["id"])
        asked = "Within how many days must I submit expense receipts, and in which app?"
        out = await gw.call(spec, {"query": asked}, caller=Requester(who))
        found = [h["excerpt"] for h in out.result["hits"] if h["document"] == "expenses.md"]
        assert found and "Ledgerly app within 21 days of the expense" in found[0]
        assert "..." not in found[0]


@pytest.mark.asyncio
async def test_files_ingested_before_uploads_are_carried_over_for_indexing(
    pg_server_url: str,
) -> None:
    import uuid as uuid_

    import psycopg

    from core.db import migrate

    name = f"keel_t_{uuid_.uuid4().hex[:12]}"
    with psycopg.connect(pg_server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = pg_server_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute(
                "CREATE TABLE tool_documents (tenant text, source text, chunk int, sha256 text,"
                " body text, PRIMARY KEY (tenant, source, chunk))"
            )
            await conn.execute(
                "INSERT INTO tool_documents VALUES"
                " ('acme', '/srv/docs/runbook.md', 0, 'h1', 'One'),"
                " ('acme', '/srv/docs/runbook.md', 1, 'h1', 'Two'),"
                " ('globex', '/srv/notes.txt', 0, 'h2', 'Three')"
            )
            await migrate(conn)
            cur = await conn.execute(
                "SELECT d.tenant, d.name, d.status, d.chunks, convert_from(d.content, 'UTF8'),"
                " array_agg(c.body ORDER BY c.chunk) FROM documents d"
                " JOIN document_chunks c ON c.document_id = d.id GROUP BY d.id ORDER BY d.tenant"
            )
            rows = await cur.fetchall()
            gone = await (await conn.execute("SELECT to_regclass('tool_documents')")).fetchone()
    finally:
        with psycopg.connect(pg_server_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    assert [tuple(r) for r in rows] == [
        ("acme", "runbook.md", "indexing", 2, "One\n\nTwo", ["One", "Two"]),
        ("globex", "notes.txt", "indexing", 1, "Three", ["Three"]),
    ]
    assert gone is not None and gone[0] is None
