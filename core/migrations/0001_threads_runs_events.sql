-- Threads belong to (tenant, user); runs belong to threads; events are the append-only log.
CREATE TABLE threads (
    thread_id  text PRIMARY KEY,
    tenant     text NOT NULL,
    user_id    text NOT NULL,
    title      text,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX threads_owner ON threads (tenant, user_id, created_at DESC);

CREATE TABLE runs (
    run_id      text PRIMARY KEY,
    thread_id   text NOT NULL REFERENCES threads (thread_id) ON DELETE CASCADE,
    trace_id    text NOT NULL,
    agent       text NOT NULL,
    status      text NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    usage       jsonb
);
CREATE INDEX runs_thread ON runs (thread_id, started_at);
CREATE INDEX runs_trace ON runs (trace_id);

CREATE TABLE events (
    thread_id text NOT NULL REFERENCES threads (thread_id) ON DELETE CASCADE,
    seq       bigint NOT NULL,
    run_id    text NOT NULL,
    type      text NOT NULL,
    ts        timestamptz NOT NULL,
    body      jsonb NOT NULL,
    PRIMARY KEY (thread_id, seq)
);
CREATE INDEX events_run ON events (run_id, seq);
