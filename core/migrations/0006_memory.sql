-- Long-term memory: one AES-GCM encrypted profile per (tenant, user). key_id names the master
-- key whose per-tenant derivation encrypted the row, so a rotation can find and re-encrypt it.
CREATE TABLE memory_long_term (
    tenant      text NOT NULL,
    user_id     text NOT NULL,
    key_id      text NOT NULL,
    nonce       bytea NOT NULL,
    ciphertext  bytea NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, user_id)
);
CREATE INDEX memory_long_term_key ON memory_long_term (key_id);
