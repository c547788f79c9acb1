-- Messaging status events (docs/design.md, "Input forms") name only a channel message (SM/MM). One row per
-- channel message joins them to receipts: once the receipt is known the row names it and
-- never changes again; before that it is a placeholder holding the status events that came
-- first (`pending`), which expires after PENDING_STATUS_TTL_S. Every batch that brings a
-- status event or a new receipt locks these rows first (insert-first, in key order), so a
-- status and its receipt arriving at once in two replicas cannot miss each other.
CREATE TABLE channel_message_links (
    channel_message_sid text        PRIMARY KEY,
    message_sid         text,
    participant_sid     text,
    -- Waiting status events: [[account_sid, status, error_code, date_updated], ...].
    pending             jsonb,
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CHECK ((message_sid IS NULL) = (participant_sid IS NULL)),
    CHECK (message_sid IS NULL OR pending IS NULL)
);
-- Expiry and the pending gauge look only at placeholders.
CREATE INDEX channel_message_links_pending_idx ON channel_message_links (updated_at)
    WHERE message_sid IS NULL;

-- Receipts stored before this migration get their links, so their status events join.
INSERT INTO channel_message_links (channel_message_sid, message_sid, participant_sid)
SELECT DISTINCT ON (channel_message_sid) channel_message_sid, message_sid, participant_sid
  FROM delivery_receipts
 WHERE channel_message_sid IS NOT NULL
 ORDER BY channel_message_sid, message_sid, participant_sid
ON CONFLICT DO NOTHING;
