-- Each tenant's documents generation: a counter bumped (by trigger) whenever one of its documents
-- is added, deleted or changes status. A documents server keeps the tenant's chunks in memory
-- for search (lexemes and vectors, tools/servers/documents/index.py) and reloads them only when
-- this number moved, whichever process wrote (API upload, indexer, `keel ingest`).
CREATE TABLE document_generations (
    tenant      text PRIMARY KEY,
    generation  bigint NOT NULL
);

INSERT INTO document_generations (tenant, generation)
    SELECT DISTINCT tenant, 1 FROM documents;

CREATE FUNCTION document_generation_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO document_generations AS g (tenant, generation)
        VALUES (CASE WHEN TG_OP = 'DELETE' THEN OLD.tenant ELSE NEW.tenant END, 1)
        ON CONFLICT (tenant) DO UPDATE SET generation = g.generation + 1;
    RETURN NULL;
END $$;

CREATE TRIGGER documents_generation
    AFTER INSERT OR DELETE OR UPDATE OF status ON documents
    FOR EACH ROW EXECUTE FUNCTION document_generation_bump();
