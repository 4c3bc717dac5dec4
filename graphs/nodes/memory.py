"""The memory router and the session writer (practice 14): memory is reached only here.

``memory_router`` runs before the planner. It trims the conversation to the short-term budget
(folding older turns into the running summary) and removes the folded turns from the graph's
``messages`` (``RemoveMessage``), so the state a checkpoint stores stays within the budget
however long the thread grows: checkpoint bytes per turn stay flat, and a thread's total grows
linearly, not quadratically. The turns stay in the event log (replay, history, the UI) and in
earlier checkpoints (time travel). Then it decides by cheap rules which other layers
the question needs (``memory/router.py``), reads only those, and emits a ``memory`` event per
layer it touched (``store``, ``op``, ``hits``). The planner and summarizer see only what it put
in ``recalled``; profile fields appear there only with the scope ``memory:long_term`` and only
when the question selects them.

A request to remember or forget ("Remember that my favourite colour is green", "Forget my
favourite colour") is carried out here, by rules (``memory/router.py``), in the caller's
long-term memory when the token holds ``memory:long_term``; ``recalled["memory_note"]`` says
what happened (saved, deleted, nothing matched, or not saved for want of the scope) in words
for the user, the planner plans no step for it, and the summarizer answers with the note itself:
the facts are known exactly, so no model rewrites them (a small model turned a missing scope
into a bare "I can't assist with that").

``remember`` runs after the summarizer and stores the turn's facts in session memory: each tool
step's finding (source ``step:<tool>:<hash of the step>``) and a user's statement (source
``said:<hash>``), so a retried or replayed turn overwrites instead of duplicating. A later
question whose closest session fact came from a tool (score ≥ ``reuse_score``) is answered from
that fact: the planner drops the tool call.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage, RemoveMessage
from langgraph.runtime import Runtime
from langgraph.types import StreamWriter

from core.embeddings import Embedder
from core.events import MemoryData, WarningData
from core.settings import MemorySettings, get_settings
from graphs.context import RunContext
from graphs.emit import emit, status
from graphs.nodes import last_question
from graphs.state import State
from memory.long_term import SCOPE, LongTermMemory, Profile
from memory.router import (
    fields_named,
    forget_intent,
    is_personal,
    is_statement,
    remember_intent,
    select_fields,
)
from memory.session import Fact, FactKind, SessionMemory
from memory.short_term import window

log = logging.getLogger(__name__)
ROUTER = "memory_router"
WRITER = "remember"


def _settings(ctx: RunContext) -> MemorySettings:
    return ctx.memory.settings if ctx.memory is not None else get_settings().memory


def _degraded(writer: StreamWriter, node: str, layer: str, exc: Exception) -> None:
    log.warning("memory layer failed", extra={"keel": {"layer": layer, "error": repr(exc)}})
    emit(
        writer,
        node,
        WarningData(
            code="memory_unavailable",
            message=f"{layer} memory is unavailable; going on without it.",
        ),
    )


async def memory_router(state: State, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Select what this turn may know beyond the question, and nothing else."""
    writer, ctx = runtime.stream_writer, runtime.context
    settings = _settings(ctx)
    messages = state["messages"]
    question = last_question(messages)
    history = messages[:-1] if messages and isinstance(messages[-1], HumanMessage) else messages
    win = window(
        history,
        summary=state.get("summary", ""),
        folded=state.get("folded", 0),
        budget_tokens=settings.short_term_budget_tokens,
        summary_max_tokens=settings.summary_max_tokens,
    )
    if win.newly_folded:
        emit(writer, ROUTER, MemoryData(store="short_term", op="write", hits=win.newly_folded))
    recalled: dict[str, Any] = {
        "conversation": win.render(),
        "facts": [],
        "profile": {},
        "reuse_tools": [],
    }
    layers = ctx.memory
    session = layers.session if layers is not None else None
    long_term = layers.long_term if layers is not None else None
    use_session = session is not None and any(isinstance(m, AIMessage) for m in history)
    use_long_term = long_term is not None and SCOPE in ctx.identity.scopes and is_personal(question)
    if use_session or use_long_term:
        status(writer, ROUTER, "retrieving_memory")
    if use_session and session is not None:
        recalled.update(await _session_facts(writer, ctx, session, question, settings))
    if (note := await _memory_request(writer, ctx, question)) is not None:
        recalled["memory_note"] = note
        use_long_term = False  # the note says what was saved or deleted: no read after it
    if use_long_term and long_term is not None:
        embedder = getattr(session, "embedder", None)
        recalled["profile"] = await _profile_fields(writer, ctx, long_term, question, embedder)
    # Folded turns leave the state: the summary covers them from now on (``folded`` counts
    # the leading turns it covers that are still in ``messages``: none once they are removed).
    gone = [RemoveMessage(id=m.id) for m in win.covered if m.id]
    out: dict[str, Any] = {
        "recalled": recalled,
        "summary": win.summary,
        "folded": win.folded - len(gone),
    }
    if gone:  # an empty write would still store a new version of the conversation
        out["messages"] = gone
    return out


async def _session_facts(
    writer: StreamWriter,
    ctx: RunContext,
    session: SessionMemory,
    question: str,
    settings: MemorySettings,
) -> dict[str, Any]:
    """This thread's facts close to ``question``, and the tools whose results they hold."""
    try:
        hits = await session.recall(
            ctx.identity.tenant,
            ctx.thread_id,
            question,
            limit=settings.session.limit,
            min_score=settings.session.min_score,
        )
    except Exception as exc:
        _degraded(writer, ROUTER, "session", exc)
        hits = []
    else:
        emit(writer, ROUTER, MemoryData(store="session", op="read", hits=len(hits)))
    reuse = {
        str(h.fact.meta["tool"])
        for h in hits
        if h.fact.kind == "tool_result"
        and "tool" in h.fact.meta
        and h.score >= settings.session.reuse_score
    }
    facts = [{"text": h.fact.text, "kind": h.fact.kind, "score": round(h.score, 3)} for h in hits]
    return {"facts": facts, "reuse_tools": sorted(reuse)}


async def _profile_fields(
    writer: StreamWriter,
    ctx: RunContext,
    long_term: LongTermMemory,
    question: str,
    embedder: Embedder | None,
) -> dict[str, str]:
    """The caller's profile fields ``question`` selects (none when the store fails)."""
    try:
        profile = await long_term.get(ctx.identity)
        chosen = await select_fields(question, profile.fields, embedder)
    except Exception as exc:
        _degraded(writer, ROUTER, "long-term", exc)
        return {}
    emit(writer, ROUTER, MemoryData(store="long_term", op="read", hits=len(chosen)))
    return {name: profile.fields[name] for name in chosen}


async def _memory_request(writer: StreamWriter, ctx: RunContext, question: str) -> str | None:
    """Carry out "remember …" or "forget …" in long-term memory; what happened, for the answer."""
    wanted, what = remember_intent(question), forget_intent(question)
    if wanted is None and what is None:
        return None
    long_term = ctx.memory.long_term if ctx.memory is not None else None
    if SCOPE not in ctx.identity.scopes:
        return (
            "I can't do that: your token lacks the `memory:long_term` scope, so I have no"
            " permission to save to or delete from your long-term memory. A token with that"
            " scope lets me remember across threads."
        )
    if long_term is None:
        return "I can't do that: long-term memory is not enabled on this server."
    try:
        profile = await long_term.get(ctx.identity)
        fields = dict(profile.fields)
        if wanted is not None:
            fields.update((name, value[:2000]) for name, value in wanted)
            saved = "; ".join(f"{name.replace('_', ' ')} = {value}" for name, value in wanted)
            note = f"Saved to your long-term memory: {saved}."
            op, hits = "write", len(wanted)
        else:
            gone = fields_named(what or "", fields)
            for name in gone:
                del fields[name]
            note = (
                "Deleted from your long-term memory: "
                + ", ".join(n.replace("_", " ") for n in gone)
                + "."
                if gone
                else f"Nothing about {what!r} was in your long-term memory."
            )
            op, hits = "delete", len(gone)
        await long_term.put(ctx.identity, Profile(fields=fields))
    except Exception as exc:
        _degraded(writer, ROUTER, "long-term", exc)
        return (
            "Nothing was saved or deleted: long-term memory is unavailable right now."
            " Try again later."
        )
    emit(writer, ROUTER, MemoryData(store="long_term", op=op, hits=hits))
    return note


def _digest(text: str) -> str:
    return hashlib.sha256(text.strip().lower().encode()).hexdigest()[:16]


async def remember(state: State, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Store this turn's tool findings and the user's statement in session memory."""
    ctx = runtime.context
    session = ctx.memory.session if ctx.memory is not None else None
    if session is None:
        return {}

    def fact(source: str, kind: FactKind, text: str, **meta: Any) -> Fact:
        tenant, thread = ctx.identity.tenant, ctx.thread_id
        return Fact(tenant=tenant, thread_id=thread, source=source, kind=kind, text=text, meta=meta)

    facts = [
        fact(
            f"step:{step['tool']}:{_digest(step['description'])}",
            "tool_result",
            f"{step['description']}: {finding['text']}"[:8000],
            tool=step["tool"],
            run_id=ctx.run_id,
        )
        for step, finding in zip(state.get("plan", []), state.get("findings", []), strict=False)
        if step["tool"] != "none" and finding.get("text")
    ]
    question = last_question(state["messages"])
    memory_request = state.get("recalled", {}).get("memory_note")
    if is_statement(question) and not memory_request:  # those live in long-term memory
        facts.append(fact(f"said:{_digest(question)}", "user_statement", question[:8000]))
    if not facts:
        return {}
    try:
        written = await session.remember(facts)
    except Exception as exc:
        _degraded(runtime.stream_writer, WRITER, "session", exc)
        return {}
    emit(runtime.stream_writer, WRITER, MemoryData(store="session", op="write", hits=written))
    return {}
