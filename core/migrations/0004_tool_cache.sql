-- Earlier successful tool results, served when a tool degrades (fallbacks: use: cache).
-- Keyed by tenant (a cached answer never crosses tenants), tool, version and normalised args.
CREATE TABLE tool_cache (
    tenant      text NOT NULL,
    tool        text NOT NULL,
    version     text NOT NULL,
    args_key    text NOT NULL,
    args        jsonb NOT NULL,
    result      jsonb NOT NULL,
    text        text NOT NULL,
    stored_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, tool, version, args_key)
);
CREATE INDEX tool_cache_stored_at ON tool_cache (stored_at);
