-- Side effects once across crashes: a side-effecting tool call is recorded under its key (stable
-- across a resumed run) before it is made, and its outcome after. A row without an outcome is a
-- call whose process died mid-way: what it did is unknown.
CREATE TABLE tool_intents (
    tenant      text NOT NULL,
    key         text NOT NULL,
    trace_id    text NOT NULL,
    tool        text NOT NULL,
    version     text NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    outcome     text,
    result      jsonb,
    text        text,
    PRIMARY KEY (tenant, key)
);
CREATE INDEX tool_intents_started_at ON tool_intents (started_at);
