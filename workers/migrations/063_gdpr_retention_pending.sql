-- insite-gdpr (docs/gdpr-retention.md, "Another database"): a batch deleted
-- in another database (a data-map target outside ours) cannot move
-- gdpr_audit_log in its own transaction.  Before that database commits, the
-- batch is written here with the other transaction's id (txid_current());
-- once it has committed, the row goes and rows_affected grows, in one
-- transaction of ours.  A run killed in between leaves the row: the next
-- run asks the other database for txid_status() and counts the batch only
-- if it committed, so the log stays exact.
CREATE TABLE gdpr_retention_pending (
    log_id     bigint      PRIMARY KEY REFERENCES gdpr_audit_log (id) ON DELETE CASCADE,
    database   text        NOT NULL,
    txid       bigint      NOT NULL,
    rows       bigint      NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
