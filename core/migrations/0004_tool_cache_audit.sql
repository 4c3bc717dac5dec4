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

-- Who called which tool, with which (redacted) arguments, allowed or denied, under which trace.
-- Append-only: a trigger refuses UPDATE and DELETE.
CREATE TABLE tool_audit (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    trace_id    text NOT NULL,
    tenant      text NOT NULL,
    user_id     text NOT NULL,
    tool        text NOT NULL,
    version     text NOT NULL,
    args        jsonb NOT NULL,
    decision    text NOT NULL CHECK (decision IN ('allowed', 'denied')),
    outcome     text NOT NULL
);
CREATE INDEX tool_audit_tenant_at ON tool_audit (tenant, at);
CREATE INDEX tool_audit_trace ON tool_audit (trace_id);
CREATE FUNCTION tool_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'tool_audit is append-only';
END $$;
CREATE TRIGGER tool_audit_append_only BEFORE UPDATE OR DELETE ON tool_audit
    FOR EACH ROW EXECUTE FUNCTION tool_audit_append_only();
