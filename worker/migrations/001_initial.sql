-- The public read model (docs/design.md, "Outputs") plus the worker's own bookkeeping tables.
-- Table and column names of delivery_receipts, message_delivery and
-- delivery_receipt_history are a contract with readers: change them only with a new view.

CREATE TABLE delivery_receipts (
    message_sid         text        NOT NULL,
    participant_sid     text        NOT NULL,
    receipt_sid         text        NOT NULL,
    account_sid         text        NOT NULL,
    chat_service_sid    text,
    conversation_sid    text        NOT NULL,
    channel_message_sid text,
    channel             text        NOT NULL,
    status              text        NOT NULL,
    error_code          integer,
    date_created        timestamptz NOT NULL,
    date_updated        timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (message_sid, participant_sid)
);
CREATE INDEX delivery_receipts_receipt_sid_idx ON delivery_receipts (receipt_sid);
CREATE INDEX delivery_receipts_conversation_idx ON delivery_receipts (conversation_sid, message_sid);
-- The API's delivered/read ratios over a time window select by date_created.
CREATE INDEX delivery_receipts_date_created_idx ON delivery_receipts (date_created);

-- One row per distinct applied event; the REST resource keeps no history, this does.
CREATE TABLE delivery_receipt_history (
    id              bigserial   PRIMARY KEY,
    message_sid     text        NOT NULL,
    participant_sid text        NOT NULL,
    receipt_sid     text        NOT NULL,
    channel         text        NOT NULL,
    status          text        NOT NULL,
    error_code      integer,
    date_updated    timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now()
);
-- error_code 0 is normalised to NULL by the parser, so coalescing to 0 makes NULLs equal.
CREATE UNIQUE INDEX delivery_receipt_history_event_uq ON delivery_receipt_history
    (message_sid, participant_sid, status, date_updated, (coalesce(error_code, 0)));

CREATE TABLE message_delivery_counts (
    message_sid       text        PRIMARY KEY,
    conversation_sid  text        NOT NULL,
    account_sid       text        NOT NULL,
    chat_service_sid  text,
    total             integer     NOT NULL,
    sent_count        integer     NOT NULL,
    delivered_count   integer     NOT NULL,
    read_count        integer     NOT NULL,
    failed_count      integer     NOT NULL,
    undelivered_count integer     NOT NULL,
    version           bigint      NOT NULL,
    -- No CHECK on the counts: the batch upsert inserts count *deltas*, and Postgres checks
    -- the proposed row before it resolves the conflict into an update.
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX message_delivery_counts_conversation_idx ON message_delivery_counts (conversation_sid);

-- Twilio reports each stage as a word: none if no receipt reached it, all if every one did.
CREATE FUNCTION delivery_word(stage_count integer, total integer) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT CASE WHEN stage_count = 0 THEN 'none' WHEN stage_count = total THEN 'all' ELSE 'some' END $$;

CREATE VIEW message_delivery AS
SELECT message_sid, conversation_sid, account_sid, chat_service_sid, total,
       sent_count, delivered_count, read_count, failed_count, undelivered_count,
       delivery_word(sent_count, total)        AS sent,
       delivery_word(delivered_count, total)   AS delivered,
       delivery_word(read_count, total)        AS read,
       delivery_word(failed_count, total)      AS failed,
       delivery_word(undelivered_count, total) AS undelivered,
       version, updated_at
FROM message_delivery_counts;

-- Summary-changed events written in the same transaction as the change they describe;
-- the publisher deletes a row only after the broker acknowledged it.
CREATE TABLE summary_outbox (
    id          bigserial   PRIMARY KEY,
    message_sid text        NOT NULL,
    version     bigint      NOT NULL,
    payload     bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- The input offsets live here, committed with the state they produced (exactly-once effect).
CREATE TABLE consumer_offsets (
    consumer_group text        NOT NULL,
    topic          text        NOT NULL,
    partition      integer     NOT NULL,
    next_offset    bigint      NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, topic, partition)
);
