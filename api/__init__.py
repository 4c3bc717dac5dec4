"""Keel's HTTP surface: FastAPI app, routes, the run executor and event streaming."""

import os

# Before anything imports langgraph: checkpoints deserialize only known types.
os.environ.setdefault("LANGGRAPH_STRICT_MSGPACK", "true")
