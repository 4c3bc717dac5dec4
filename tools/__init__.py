"""Tools: versioned MCP servers, one pipeline per tool call, and the gateway that runs them."""
