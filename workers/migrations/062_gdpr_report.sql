-- insite-gdpr (docs/gdpr-retention.md, "Compliance report"): the report's
-- audit completeness counts, per chain (source, worker), the distinct seqs
-- of the period.  Read in this index's order (an index-only scan: ts is
-- included for the period's filter), the count needs no sort of the
-- period's rows.  Built inside the migration's transaction: on an existing
-- large trail this blocks the shipper's inserts while it builds (about 8 s
-- per million rows on the 2-core test machine).
CREATE INDEX gdpr_audit_trail_chain_seq_idx ON gdpr_audit_trail (source, worker, seq) INCLUDE (ts);

-- The report's activity query groups by the UTC day of ts; with statistics
-- on that expression the planner knows a year is ~365 groups and hashes
-- them in one scan, instead of sorting the period's rows.
CREATE STATISTICS gdpr_audit_trail_day_stats ON ((ts AT TIME ZONE 'UTC')::date) FROM gdpr_audit_trail;
ANALYZE gdpr_audit_trail;
