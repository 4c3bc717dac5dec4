-- Which variant of its agent a run used (chosen by the feedback router, or the default), and
-- the caller's tier, the segment the router learns per.
ALTER TABLE runs ADD COLUMN agent_variant text;
ALTER TABLE runs ADD COLUMN tier text;

-- Explicit feedback: one rating per user per run (a second replaces the first).
CREATE TABLE feedback (
    run_id        text NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    user_id       text NOT NULL,
    tenant        text NOT NULL,
    thread_id     text NOT NULL,
    trace_id      text NOT NULL,
    agent         text NOT NULL,
    agent_variant text,
    model         text NOT NULL,
    tool_versions jsonb NOT NULL DEFAULT '{}',
    rating        text NOT NULL CHECK (rating IN ('thumbs_up', 'thumbs_down')),
    reason        text,
    comment       text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, user_id)
);
CREATE INDEX feedback_tenant_time ON feedback (tenant, created_at);

-- Implicit signals, from the client (copy, dwell_ms, regenerate, follow_up) or derived by the
-- server (not_resolved: a follow-up question in the same thread within 60 s of the answer).
CREATE TABLE signals (
    id            bigserial PRIMARY KEY,
    run_id        text NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    user_id       text NOT NULL,
    tenant        text NOT NULL,
    thread_id     text NOT NULL,
    trace_id      text NOT NULL,
    agent         text NOT NULL,
    agent_variant text,
    model         text NOT NULL,
    tool_versions jsonb NOT NULL DEFAULT '{}',
    kind          text NOT NULL
        CHECK (kind IN ('copy', 'follow_up', 'dwell_ms', 'regenerate', 'not_resolved')),
    value         double precision,
    source        text NOT NULL CHECK (source IN ('client', 'server')),
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX signals_tenant_time ON signals (tenant, created_at);
CREATE INDEX signals_run ON signals (run_id);
