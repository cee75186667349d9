-- Who acted for the user (issue 13): on a task, the caller's actor chain
-- when it was created and the DID of the agent it was handed to; on a
-- memory event, the chain of the one who wrote it. Both chains are in
-- X-Attach-Actor's form (current actor first); NULL when the user acted
-- alone, and in rows written before chains were recorded.
ALTER TABLE a2a_tasks ADD COLUMN actor TEXT;
ALTER TABLE a2a_tasks ADD COLUMN delegated_to TEXT;
ALTER TABLE memory_events ADD COLUMN actor TEXT;
