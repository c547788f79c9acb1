-- Fewer entries in random-keyed indexes per new message: each one is a descent to a random
-- leaf, whose cost grows as the index outgrows the caches (docs/benchmark.md, "Growth: where
-- PostgreSQL's cost goes").
--
-- A status event names only an SMS/MMS channel message, so the worker no longer writes links
-- for other channel messages (worker.status_join.receipt_links); the ones it wrote before
-- could never be read. Placeholders are always SMS/MMS (the parser refuses other status
-- events), so only links to receipts go. First, while no table is locked beyond these rows:
-- the index below is dropped under an exclusive lock held until this migration commits.
DELETE FROM channel_message_links
 WHERE left(channel_message_sid, 2) NOT IN ('SM', 'MM') AND message_sid IS NOT NULL;

-- No query of the worker or the API looks summaries up by conversation alone (every one
-- names its message: the primary key), as for the receipts' index in migration 005. A reader
-- that does can create its own, e.g.
--   CREATE INDEX CONCURRENTLY ON message_delivery_counts (conversation_sid);
DROP INDEX IF EXISTS message_delivery_counts_conversation_idx;
