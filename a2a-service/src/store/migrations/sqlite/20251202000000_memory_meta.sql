-- What the gateway's mirror knows of a model exchange besides its text
-- (model, route, request id, upstream status, latency, token counts,
-- truncation), as one JSON object; NULL for documents that carry none.
ALTER TABLE memory_events ADD COLUMN meta TEXT;
