-- Journal record format 2 (docs/gdpr.md): "reason" says why the edge
-- refused an audited request (consent_required, consent_unavailable,
-- audit_unavailable); NULL when it did not, and for format-1 records,
-- which have no such field (their hashes cover their lines as written).
ALTER TABLE gdpr_audit_trail ADD COLUMN reason text;
CREATE INDEX gdpr_audit_trail_reason_ts_idx ON gdpr_audit_trail (reason, ts DESC)
    WHERE reason IS NOT NULL;
