-- Thread metadata: what LangGraph clients attach to a thread and search threads by (the Agent
-- Protocol's threads.create/update/search), kept beside Keel's own columns.
ALTER TABLE threads ADD COLUMN metadata jsonb NOT NULL DEFAULT '{}'::jsonb;
ALTER TABLE threads ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX threads_metadata ON threads USING gin (metadata jsonb_path_ops);
