-- The MCP tool of a mirrored tool call or result (issue 14), in a column
-- of its own so that a listing can select one tool's calls; NULL on every
-- other event.
ALTER TABLE memory_events ADD COLUMN tool TEXT;
