-- A message's summary is updated by every batch that brings one of its receipts' events
-- (several times in its first minutes). Packed full, as inserts leave them, its pages had
-- no room for the new row version: 98 % of the updates were not HOT and each added an
-- entry to the random-keyed primary key (docs/benchmark.md, "Growth"). Room on each page
-- lets PostgreSQL update in place, as migration 004 did for the receipts. Applies to pages
-- written from now on.
ALTER TABLE message_delivery_counts SET (fillfactor = 80);
