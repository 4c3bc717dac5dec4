-- API keys for service accounts: only a SHA-256 of the key is kept; key_id is its public part.
CREATE TABLE api_keys (
    key_id      text PRIMARY KEY,
    key_hash    text NOT NULL UNIQUE,
    tenant      text NOT NULL,
    user_id     text NOT NULL,
    tier        text NOT NULL,
    scopes      text[] NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE INDEX api_keys_owner ON api_keys (tenant, user_id);
