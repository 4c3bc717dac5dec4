-- The documents corpus: each tenant's files (the original bytes, so indexing can resume after a
-- restart and a client can open the file) and their chunks, each with its page, a tsvector for
-- full-text search and an embedding (float32 little-endian, NULL until indexed).
CREATE TABLE documents (
    id           uuid PRIMARY KEY,
    tenant       text NOT NULL,
    name         text NOT NULL,
    kind         text NOT NULL,
    size         bigint NOT NULL,
    sha256       text NOT NULL,
    pages        int,
    chunks       int NOT NULL,
    status       text NOT NULL,
    error        text,
    uploaded_by  text NOT NULL,
    uploaded_at  timestamptz NOT NULL DEFAULT now(),
    ready_at     timestamptz,
    content      bytea NOT NULL,
    UNIQUE (tenant, sha256)
);
CREATE INDEX documents_tenant ON documents (tenant, uploaded_at DESC);
CREATE INDEX documents_indexing ON documents (status) WHERE status = 'indexing';

CREATE TABLE document_chunks (
    document_id  uuid NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    tenant       text NOT NULL,
    chunk        int NOT NULL,
    page         int,
    body         text NOT NULL,
    tsv          tsvector GENERATED ALWAYS AS (to_tsvector('english', body)) STORED,
    embedding    bytea,
    PRIMARY KEY (document_id, chunk)
);
CREATE INDEX document_chunks_tsv ON document_chunks USING gin (tsv);
CREATE INDEX document_chunks_tenant ON document_chunks (tenant);

-- Files added by `keel ingest` before uploads existed: carried over as text documents, to be
-- embedded by the next `keel serve` (status indexing).
DO $$
BEGIN
    IF to_regclass('tool_documents') IS NOT NULL THEN
        CREATE TEMP TABLE carried ON COMMIT DROP AS
            SELECT gen_random_uuid() AS id, tenant, source, min(sha256) AS sha256,
                   string_agg(body, E'\n\n' ORDER BY chunk) AS body, count(*)::int AS n
            FROM tool_documents GROUP BY tenant, source;
        INSERT INTO documents (id, tenant, name, kind, size, sha256, pages, chunks, status,
                               uploaded_by, content)
            SELECT id, tenant, regexp_replace(source, '^.*/', ''), 'text',
                   octet_length(body), sha256, NULL, n, 'indexing', 'keel ingest',
                   convert_to(body, 'UTF8')
            FROM carried ON CONFLICT (tenant, sha256) DO NOTHING;
        INSERT INTO document_chunks (document_id, tenant, chunk, page, body)
            SELECT c.id, t.tenant, t.chunk, NULL, t.body
            FROM carried c JOIN documents d ON d.id = c.id
            JOIN tool_documents t ON t.tenant = c.tenant AND t.source = c.source;
        DROP TABLE tool_documents;
    END IF;
END $$;
