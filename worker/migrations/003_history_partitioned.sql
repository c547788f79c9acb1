-- delivery_receipt_history becomes a table partitioned by month of the event's own
-- date_updated (same name, same columns), so that index upkeep stays on the current
-- months and retention drops whole partitions instead of deleting rows (docs/design.md,
-- "History partitions").
--
-- Why date_updated and not the arrival time (recorded_at): a unique index of a partitioned
-- table must contain the partition key. Exact duplicates (same receipt, status, date_updated,
-- error_code) share their date_updated, so they always meet in the same partition and the
-- one unique index still stores them once, however late a duplicate arrives.
--
-- The unique index no longer needs coalesce(error_code, 0) (an expression, which a
-- partitioned unique index cannot have): NULLS NOT DISTINCT makes NULLs equal, and the
-- parser stores no error as NULL, never 0. The primary key on id is dropped: nothing looks
-- a row up by id alone, ids stay unique (one sequence) and keep ordering ties in the API.
-- That is one index fewer to maintain per history row.

ALTER TABLE delivery_receipt_history RENAME TO delivery_receipt_history_unpartitioned;
ALTER INDEX delivery_receipt_history_event_uq RENAME TO delivery_receipt_history_unpartitioned_uq;
ALTER SEQUENCE delivery_receipt_history_id_seq OWNED BY NONE;

CREATE TABLE delivery_receipt_history (
    id              bigint      NOT NULL DEFAULT nextval('delivery_receipt_history_id_seq'),
    message_sid     text        NOT NULL,
    participant_sid text        NOT NULL,
    receipt_sid     text        NOT NULL,
    channel         text        NOT NULL,
    status          text        NOT NULL,
    error_code      integer,
    date_updated    timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now()
) PARTITION BY RANGE (date_updated);

-- Also the API's index: a receipt's history in date_updated order.
CREATE UNIQUE INDEX delivery_receipt_history_event_uq ON delivery_receipt_history
    (message_sid, participant_sid, date_updated, status, error_code) NULLS NOT DISTINCT;

-- Dates far outside the window the worker keeps partitions for (a producer's clock years
-- off) land here instead of failing the batch; a monthly partition created later takes
-- its rows over (delivery_receipt_history_create_partition).
CREATE TABLE delivery_receipt_history_default PARTITION OF delivery_receipt_history DEFAULT;

-- The monthly partition holding `month` (any date in it), created if missing; returns its
-- name when it created it, NULL when it existed. Safe to call from several replicas.
CREATE FUNCTION delivery_receipt_history_create_partition(month date) RETURNS text
    LANGUAGE plpgsql AS $$
DECLARE
    first_day date := date_trunc('month', month)::date;
    lo timestamptz := first_day::timestamp AT TIME ZONE 'UTC';
    hi timestamptz := (first_day + interval '1 month')::timestamp AT TIME ZONE 'UTC';
    name text := 'delivery_receipt_history_p' || to_char(first_day, 'YYYYMM');
BEGIN
    IF to_regclass(name) IS NOT NULL THEN
        RETURN NULL;
    END IF;
    -- One creator at a time (0x6472_7700_0003, beside the outbox locks), then look again;
    -- the table lock also brings this session's catalog cache up to date with a partition
    -- another creator committed meanwhile (an advisory lock alone does not).
    PERFORM pg_advisory_xact_lock(110442785538051);
    LOCK TABLE delivery_receipt_history IN ACCESS SHARE MODE;
    IF to_regclass(name) IS NOT NULL THEN
        RETURN NULL;
    END IF;
    IF EXISTS (SELECT 1 FROM delivery_receipt_history_default
                WHERE date_updated >= lo AND date_updated < hi) THEN
        -- Rows for this month wait in the default partition: move them into the new
        -- partition, writers held off meanwhile (this is rare: dates far off, then reached).
        LOCK TABLE delivery_receipt_history IN SHARE ROW EXCLUSIVE MODE;
        EXECUTE format('CREATE TABLE %I (LIKE delivery_receipt_history INCLUDING DEFAULTS)',
                       name);
        EXECUTE format('WITH moved AS (DELETE FROM delivery_receipt_history_default'
                       ' WHERE date_updated >= %L AND date_updated < %L RETURNING *)'
                       ' INSERT INTO %I SELECT * FROM moved', lo, hi, name);
        EXECUTE format('ALTER TABLE delivery_receipt_history ATTACH PARTITION %I'
                       ' FOR VALUES FROM (%L) TO (%L)', name, lo, hi);
    ELSE
        EXECUTE format('CREATE TABLE %I PARTITION OF delivery_receipt_history'
                       ' FOR VALUES FROM (%L) TO (%L)', name, lo, hi);
    END IF;
    RETURN name;
END $$;

-- The first day of every month that has its own partition.
CREATE FUNCTION delivery_receipt_history_months() RETURNS SETOF date
    LANGUAGE sql STABLE AS $$
    SELECT to_date(right(c.relname, 6), 'YYYYMM')
      FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
     WHERE i.inhparent = 'delivery_receipt_history'::regclass
       AND c.relname ~ '^delivery_receipt_history_p[0-9]{6}$'
     ORDER BY 1
$$;

-- Retention: drop every monthly partition that ends at or before `horizon`, whole (no
-- DELETE, no vacuum debt); returns the names dropped.
CREATE FUNCTION delivery_receipt_history_drop_before(horizon timestamptz) RETURNS SETOF text
    LANGUAGE plpgsql AS $$
DECLARE
    month date;
BEGIN
    -- One replica at a time, and never beside a creation (the creators' lock).
    PERFORM pg_advisory_xact_lock(110442785538051);
    FOR month IN SELECT * FROM delivery_receipt_history_months() LOOP
        IF ((month + interval '1 month')::timestamp AT TIME ZONE 'UTC') <= horizon THEN
            RETURN NEXT 'delivery_receipt_history_p' || to_char(month, 'YYYYMM');
            EXECUTE format('DROP TABLE IF EXISTS %I',
                           'delivery_receipt_history_p' || to_char(month, 'YYYYMM'));
        END IF;
    END LOOP;
END $$;

-- The existing rows: a partition for every month they span, then copied over.
SELECT delivery_receipt_history_create_partition(m)
  FROM (SELECT DISTINCT date_trunc('month', date_updated AT TIME ZONE 'UTC')::date AS m
          FROM delivery_receipt_history_unpartitioned) AS months;
INSERT INTO delivery_receipt_history SELECT * FROM delivery_receipt_history_unpartitioned;
DROP TABLE delivery_receipt_history_unpartitioned;
ALTER SEQUENCE delivery_receipt_history_id_seq OWNED BY delivery_receipt_history.id;

