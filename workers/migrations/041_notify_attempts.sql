-- insite-notify (docs/notify.md, "Exactly-once for e-mail and webhooks"):
-- every e-mail/webhook attempt is recorded here *before* its send, in a
-- synchronously committed statement.  An attempt whose outcome is still
-- NULL when the worker starts was interrupted between the send and its
-- record: the receiver may have it.  The next attempt repeats the same
-- Message-ID / Idempotency-Key so the receiver can drop the repeat, and the
-- interrupted row is marked 'in_doubt'.
CREATE TABLE notification_attempts (
    delivery_id bigint      NOT NULL REFERENCES notification_deliveries (id) ON DELETE CASCADE,
    attempt     integer     NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    outcome     text,       -- NULL (sending), delivered, failed, in_doubt
    error       text,
    PRIMARY KEY (delivery_id, attempt)
);
