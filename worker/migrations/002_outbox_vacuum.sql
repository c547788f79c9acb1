-- The outbox is a queue: each row is deleted moments after it is written, so its live size
-- stays tiny while dead rows pile up. Vacuum it by dead-row count instead of by a share of
-- its live size, and without cost-based pauses, so claims do not wade through dead entries.
ALTER TABLE summary_outbox SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 5000,
    autovacuum_vacuum_cost_delay = 0
);
