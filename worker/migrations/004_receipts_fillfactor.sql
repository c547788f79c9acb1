-- Receipts are updated as their statuses arrive: free room on each page lets PostgreSQL
-- update a row in place (a HOT update: none of its indexed columns change) instead of
-- adding an entry to each of the table's four indexes for every update. Applies to pages
-- written from now on.
ALTER TABLE delivery_receipts SET (fillfactor = 80);
