"""The LangGraph Agent Protocol, served beside ``/v1`` on its own paths (Keel underneath).

``langgraph_sdk.get_client(url=KEEL, headers=...)`` and the JS SDK talk to these routes:
``/assistants`` (one per configured agent), ``/threads`` (Keel's threads, state and history
from the checkpointer), ``/threads/{id}/runs`` (Keel runs through the executor, streams
translated from the event log) and ``/store`` (the caller's long-term memory). Every route
authenticates like ``/v1`` (bearer JWT or API key in ``Authorization`` or ``x-api-key``),
reads through the run store's ownership filter, and answers errors as problem+json with the
trace_id. docs/agent-protocol.md maps each route onto Keel.
"""

from fastapi import APIRouter

from api.protocol import assistants, runs, store, threads

ROUTERS: tuple[APIRouter, ...] = (assistants.router, threads.router, runs.router, store.router)
