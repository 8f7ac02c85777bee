-- The data subject of an audited access (insite_gdpr_data_subject): whose
-- data was read, next to user_id (who read it).  Records written before
-- the field existed keep NULL; their hashes cover their lines as written.
ALTER TABLE gdpr_audit_trail ADD COLUMN data_subject text;
CREATE INDEX gdpr_audit_trail_subject_ts_idx ON gdpr_audit_trail (data_subject, ts DESC);
