-- Memory search, erasure and embeddings.
--
-- `text` is the searchable text of an event (the strings of its content),
-- indexed as `tsv` (English configuration, ranked with ts_rank).
-- `model` and `agent` (the actor acting when the event was written) are
-- columns so that listings and erasures can select by them.
-- `embedding` is the event's vector (unit length), when an embedding model
-- is configured; cosine similarity is then its dot product with the query's.
ALTER TABLE memory_events ADD COLUMN text TEXT NOT NULL DEFAULT '';
ALTER TABLE memory_events ADD COLUMN model TEXT;
ALTER TABLE memory_events ADD COLUMN agent TEXT;
ALTER TABLE memory_events ADD COLUMN embedding REAL[];

UPDATE memory_events SET model = meta::jsonb ->> 'model' WHERE meta IS NOT NULL;
UPDATE memory_events SET agent = trim(split_part(actor, ',', 1)) WHERE actor IS NOT NULL;
UPDATE memory_events
   SET text = COALESCE(
       (SELECT string_agg(v #>> '{}', ' ')
          FROM jsonb_path_query(content::jsonb, 'strict $.** ? (@.type() == "string")') AS v),
       '');

ALTER TABLE memory_events
    ADD COLUMN tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', text)) STORED;
CREATE INDEX memory_events_tsv ON memory_events USING GIN (tsv);
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
