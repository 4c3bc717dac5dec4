"""LangSmith (practice 1 and 17): runs traced and rated there too, when a key is configured.

With ``LANGSMITH_API_KEY`` set, every run gets LangChain's ``LangChainTracer`` on a
``langsmith.Client`` for ``LANGSMITH_ENDPOINT`` (default: LangSmith's cloud) and project
``LANGSMITH_PROJECT`` (default ``keel``). The LangSmith root run's id is Keel's run_id, and
its metadata carries the trace_id, user, tenant, agent, agent variant and the versions of the
agent's pinned tools, so a LangSmith search by trace_id finds the run. Explicit feedback is
sent as LangSmith feedback on that run. Without a key nothing is created and nothing is sent.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
import warnings
from functools import lru_cache

from langchain_core.tracers import LangChainTracer
from langsmith import Client
from langsmith.utils import LangSmithWarning

log = logging.getLogger(__name__)


@lru_cache(maxsize=4)
def _client(endpoint: str | None, key: str) -> Client:
    return Client(api_url=endpoint, api_key=key)


def client() -> Client | None:
    """The LangSmith client for the environment's key and endpoint (``None``: no key)."""
    key = os.environ.get("LANGSMITH_API_KEY")
    if not key:
        return None
    return _client(os.environ.get("LANGSMITH_ENDPOINT"), key)


def tracer() -> LangChainTracer | None:
    """A tracer for one run (``None``: LangSmith is not configured)."""
    c = client()
    if c is None:
        return None
    return LangChainTracer(client=c, project_name=os.environ.get("LANGSMITH_PROJECT", "keel"))


async def send_feedback(run_id: str, score: float, comment: str | None, user: str) -> None:
    """Rate the LangSmith run ``run_id`` (best effort: a failure is logged, never raised)."""
    c = client()
    if c is None:
        return

    def send() -> None:
        with warnings.catch_warnings():
            # The project (session) id is not known here; LangSmith finds it from the run.
            warnings.simplefilter("ignore", LangSmithWarning)
            c.create_feedback(
                uuid.UUID(run_id),
                key="user_rating",
                score=score,
                comment=comment,
                source_info={"user": user},
            )

    try:
        await asyncio.wait_for(asyncio.to_thread(send), timeout=10)
    except Exception:
        log.exception("could not send feedback to LangSmith")
