"""The research agent: a planner, a researcher and a summarizer as one LangGraph StateGraph."""

import os

# Checkpoints must only ever deserialize known types; langgraph reads this at import time.
os.environ.setdefault("LANGGRAPH_STRICT_MSGPACK", "true")
