"""Layered memory (short-term, session, long-term), reached only through the memory router."""
