"""Keel's HTTP surface: FastAPI app, routes, dependencies, middleware, problems, UI, CLI."""

import os

# Before anything imports langgraph: checkpoints deserialize only known types.
os.environ.setdefault("LANGGRAPH_STRICT_MSGPACK", "true")
