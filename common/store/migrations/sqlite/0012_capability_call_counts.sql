-- The per-token limit of tool calls (MCP_MAX_CALLS_PER_MINUTE): the minute
-- (seconds since the epoch / 60) of a token's latest counted call, and how
-- many calls it made in that minute. Kept in the store, so that the limit
-- holds across replicas.

ALTER TABLE capability_tokens ADD COLUMN calls_minute INTEGER NOT NULL DEFAULT 0;
ALTER TABLE capability_tokens ADD COLUMN calls_in_minute INTEGER NOT NULL DEFAULT 0;
