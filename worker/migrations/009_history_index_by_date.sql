-- The history's unique key leads with the event's date instead of its message, and the
-- API's listing of one receipt's history gets a hash index on message_sid of its own.
--
-- Led by message_sid, every new history row went to a random leaf of its partition's unique
-- index, and that index grows with every event of the month: the insert cost rose with the
-- partition (`python -m bench.history_index`: 7.9 µs a row into an empty partition, 10.9 with
-- 3M rows). Led by date_updated, new rows land beside each other at the recent end of the
-- index, which stays in cache however big the partition grows; duplicates still meet there,
-- since they share their date. The hash index keeps a 4-byte hash per row: random too, but a
-- fraction of the size (both indexes: 7.0 and 7.5 µs a row). Both are built on every existing
-- partition, which takes a while on a big history: writes wait meanwhile.
DROP INDEX IF EXISTS delivery_receipt_history_event_uq;
CREATE UNIQUE INDEX IF NOT EXISTS delivery_receipt_history_event_uq ON delivery_receipt_history
    (date_updated, message_sid, participant_sid, status, error_code) NULLS NOT DISTINCT;
CREATE INDEX IF NOT EXISTS delivery_receipt_history_message_idx ON delivery_receipt_history
    USING hash (message_sid);
