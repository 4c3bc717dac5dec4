-- Agent Protocol assistants are the configured agents; each configuration of an agent gets a
-- version number the first time it is served (a changed configuration, the next number).
CREATE TABLE assistant_versions (
    agent       text NOT NULL,
    version     integer NOT NULL,
    config_hash text NOT NULL,
    config      jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (agent, version),
    UNIQUE (agent, config_hash)
);
