-- insite-gdpr (docs/gdpr-retention.md): incidents detected continuously
-- from the shipped audit trail, plan 5.4.  One row per kind, user and hour
-- (window_start): the unique index deduplicates, and a MEDIUM row is
-- raised to HIGH in place when the count goes on growing.
ALTER TABLE security_incidents ADD COLUMN user_id text, ADD COLUMN window_start timestamptz;
CREATE UNIQUE INDEX security_incidents_user_window_idx ON security_incidents (kind, user_id, window_start)
    WHERE user_id IS NOT NULL;

-- The detector finds the users with new records by shipping time.
CREATE INDEX gdpr_audit_trail_shipped_idx ON gdpr_audit_trail (shipped_at);
