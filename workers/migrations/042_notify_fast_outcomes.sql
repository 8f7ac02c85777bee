-- insite-notify (docs/notify.md, "Delivery and exactly-once"): the
-- WebSocket and Kafka outcomes of an alert are kept in its own row, so the
-- hot path writes one row per alert (one multi-row statement per pass)
-- instead of an UPDATE and two delivery INSERTs.  notification_deliveries
-- keeps e-mail and webhook deliveries and the WebSocket/Kafka sends that
-- failed (their retries, attempts and errors).
--
-- *_status: NULL   not a channel of this alert (or not planned)
--           sending  planned, the send is not recorded yet (after a crash
--                    the delivery thread sends again: the idempotency keys
--                    make a repeat harmless)
--           delivered
--           retrying a send failed: its notification_deliveries row holds
--                    attempts, error and the next try
--           failed   given up (that row says why)
ALTER TABLE notifications
    ADD COLUMN websocket_status text,
    ADD COLUMN kafka_status     text,
    ADD COLUMN sent_at          timestamptz;   -- when those outcomes were last recorded

-- what a restarted worker (or a lost record) must send again
CREATE INDEX notifications_sending_idx ON notifications (id)
    WHERE websocket_status = 'sending' OR kafka_status = 'sending';

-- the rate cap's count (alerts planned in the user's last hour), read per
-- batch that fires: bounded by that hour, not by the user's whole history
CREATE INDEX notifications_planned_idx ON notifications (user_id, planned_ms)
    WHERE state = 'planned';

-- alerts planned before this migration: their delivery rows say how it went
UPDATE notifications n SET websocket_status = CASE d.status WHEN 'pending' THEN 'retrying' ELSE d.status END,
                           sent_at = d.updated_at
  FROM notification_deliveries d WHERE d.notification_id = n.id AND d.channel = 'websocket';
UPDATE notifications n SET kafka_status = CASE d.status WHEN 'pending' THEN 'retrying' ELSE d.status END,
                           sent_at = greatest(n.sent_at, d.updated_at)
  FROM notification_deliveries d WHERE d.notification_id = n.id AND d.channel = 'kafka';
