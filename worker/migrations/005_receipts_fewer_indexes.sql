-- Two of delivery_receipts' four indexes serve no query of the worker or the API (every
-- receipt query names its message: the primary key's prefix), yet every new receipt adds
-- an entry at a random place in each, which is most of PostgreSQL's cost per event once
-- the table outgrows shared_buffers (docs/benchmark.md, "Growth"). A reader that looks
-- receipts up by receipt_sid or by conversation alone can create its own index, e.g.
--   CREATE INDEX CONCURRENTLY ON delivery_receipts (receipt_sid);
DROP INDEX IF EXISTS delivery_receipts_receipt_sid_idx;
DROP INDEX IF EXISTS delivery_receipts_conversation_idx;
