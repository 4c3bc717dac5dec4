-- Run ownership by lease: the replica running a run (owner) renews lease_expires_at while it
-- works; once the lease lapses (the owner died) any replica may claim the run and resume it
-- from its last checkpoint. attempts counts the claims (runs.max_attempts bounds them);
-- request keeps what a claimant needs to start the run again (identity, input, limits).
ALTER TABLE runs ADD COLUMN owner text;
ALTER TABLE runs ADD COLUMN lease_expires_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE runs ADD COLUMN attempts integer NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN request jsonb;
CREATE INDEX runs_unfinished ON runs (lease_expires_at) WHERE status IN ('queued', 'running');
