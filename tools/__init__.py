"""Versioned MCP tool servers and the tool gateway (arrives with the tools issue)."""
