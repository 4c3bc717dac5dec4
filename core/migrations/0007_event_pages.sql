-- Replay pages: a finished run's events rendered once as SSE frames, so a replay reads one row
-- per run instead of formatting every event. The events table stays the source of truth: a
-- page exists only for a run whose events hold a gap-free seq range, replay serves any range
-- without a page from the events, and deleting events drops the pages that covered them.
CREATE TABLE event_pages (
    thread_id text NOT NULL REFERENCES threads (thread_id) ON DELETE CASCADE,
    first_seq bigint NOT NULL,
    last_seq  bigint NOT NULL,
    run_id    text NOT NULL,
    frames    text NOT NULL,
    PRIMARY KEY (thread_id, first_seq)
);
CREATE INDEX event_pages_run ON event_pages (run_id);

-- The frame text is the one EventLog.frames formats for each event.
CREATE FUNCTION keel_page_run() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    WITH run AS (
        SELECT min(seq) AS lo, max(seq) AS hi, count(*) AS n,
               string_agg(format(E'id: %s\nevent: %s\ndata: %s\n\n', seq, type, body::text),
                          '' ORDER BY seq) AS frames
          FROM events
         WHERE thread_id = NEW.thread_id AND run_id = NEW.run_id
    )
    INSERT INTO event_pages (thread_id, first_seq, last_seq, run_id, frames)
    SELECT NEW.thread_id, run.lo, run.hi, NEW.run_id, run.frames
      FROM run
     WHERE run.n = run.hi - run.lo + 1
       AND NOT EXISTS (SELECT 1 FROM events o
                        WHERE o.thread_id = NEW.thread_id AND o.seq BETWEEN run.lo AND run.hi
                          AND o.run_id <> NEW.run_id)
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;

CREATE TRIGGER events_page_run AFTER INSERT ON events
    FOR EACH ROW WHEN (NEW.type = 'run_finished') EXECUTE FUNCTION keel_page_run();

CREATE FUNCTION keel_unpage_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM event_pages p
     USING (SELECT thread_id, min(seq) AS lo, max(seq) AS hi FROM gone GROUP BY thread_id) g
     WHERE p.thread_id = g.thread_id AND p.first_seq <= g.hi AND p.last_seq >= g.lo;
    RETURN NULL;
END $$;

CREATE TRIGGER events_unpage AFTER DELETE ON events
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION keel_unpage_deleted();
