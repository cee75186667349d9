-- Memory search, erasure and embeddings.
--
-- `text` is the searchable text of an event (the strings of its content),
-- indexed by FTS5 (bm25) in `memory_fts`, an external-content index kept
-- by the triggers below. It refers to rows by rowid, which SQLite keeps
-- unless the database is VACUUMed (memory_events has no INTEGER PRIMARY
-- KEY): after a VACUUM, run `INSERT INTO memory_fts(memory_fts)
-- VALUES('rebuild')`.
-- `model` and `agent` (the actor acting when the event was written) are
-- columns so that listings and erasures can select by them.
-- `embedding` is the event's vector (little-endian f32, unit length), when
-- an embedding model is configured.
ALTER TABLE memory_events ADD COLUMN text TEXT NOT NULL DEFAULT '';
ALTER TABLE memory_events ADD COLUMN model TEXT;
ALTER TABLE memory_events ADD COLUMN agent TEXT;
ALTER TABLE memory_events ADD COLUMN embedding BLOB;

UPDATE memory_events SET model = json_extract(meta, '$.model') WHERE meta IS NOT NULL;
UPDATE memory_events
   SET agent = trim(substr(actor, 1, instr(actor || ',', ',') - 1))
 WHERE actor IS NOT NULL;
UPDATE memory_events
   SET text = COALESCE(
       (SELECT group_concat(value, ' ') FROM json_tree(memory_events.content) WHERE type = 'text'),
       '');

CREATE VIRTUAL TABLE memory_fts USING fts5(
    text,
    content = 'memory_events',
    content_rowid = 'rowid',
    tokenize = 'porter unicode61'
);
CREATE TRIGGER memory_fts_insert AFTER INSERT ON memory_events BEGIN
    INSERT INTO memory_fts (rowid, text) VALUES (new.rowid, new.text);
END;
CREATE TRIGGER memory_fts_delete AFTER DELETE ON memory_events BEGIN
    INSERT INTO memory_fts (memory_fts, rowid, text) VALUES ('delete', old.rowid, old.text);
END;
CREATE TRIGGER memory_fts_update AFTER UPDATE OF text ON memory_events BEGIN
    INSERT INTO memory_fts (memory_fts, rowid, text) VALUES ('delete', old.rowid, old.text);
    INSERT INTO memory_fts (rowid, text) VALUES (new.rowid, new.text);
END;
INSERT INTO memory_fts (memory_fts) VALUES ('rebuild');

CREATE INDEX memory_events_unembedded ON memory_events (created_ms) WHERE embedding IS NULL;

-- What each erasure selected (a JSON MemorySelector) and when it ran: ingest
-- refuses an event the erasure selected that is older than it, so that events
-- still queued in the gateway cannot bring back what was erased.
CREATE TABLE memory_erasures (
    owner     TEXT NOT NULL,
    selector  TEXT NOT NULL,
    erased_ms BIGINT NOT NULL
);
CREATE INDEX memory_erasures_owner ON memory_erasures (owner);
