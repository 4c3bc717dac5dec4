-- Runs report liveness, so a replica can tell a live run on a thread from one left by a crash.
ALTER TABLE runs ADD COLUMN heartbeat_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX runs_thread_active ON runs (thread_id) WHERE status IN ('queued', 'running');
