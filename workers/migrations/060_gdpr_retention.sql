-- insite-gdpr (docs/gdpr-retention.md): retention policies, plan 5.1, and
-- the GDPR audit log of what the worker did on its own.
--
-- A policy names a retention target of the data map (gdpr.data_map,
-- "retention" section: database, table, time column, optional filter);
-- rows older than retention_days go.  Operators edit the rows through
-- PUT /api/v1/gdpr/retention/policies/{data_type}; every run reads them
-- afresh, so an edit applies without a restart.
CREATE TABLE gdpr_retention_policies (
    data_type      text        PRIMARY KEY,
    target         text        NOT NULL,
    retention_days integer     NOT NULL CHECK (retention_days BETWEEN 1 AND 36500),
    is_active      boolean     NOT NULL DEFAULT true,
    legal_basis    text        NOT NULL DEFAULT '',
    description    text        NOT NULL DEFAULT '',
    updated_at     timestamptz NOT NULL DEFAULT now(),
    updated_by     text
);

-- The plan's defaults, and every table of ours holding personal or bulky
-- data.  Targets missing from a deployment's data map fail their policy
-- (logged in gdpr_audit_log); the run goes on with the next.
INSERT INTO gdpr_retention_policies (data_type, target, retention_days, legal_basis, description) VALUES
    ('user_activity',     'backend_user_activity', 90,  'storage limitation (Art. 5(1)(e))', 'backend user activity'),
    ('sentiment_data',    'social_sentiment',      180, 'storage limitation (Art. 5(1)(e))', 'per-post sentiment scores from social sources'),
    ('price_history',     'stock_prices',          730, 'not personal data: bulk', 'OHLCV bars'),
    ('system_logs',       'backend_system_logs',   30,  'storage limitation (Art. 5(1)(e))', 'backend system logs'),
    ('error_logs',        'backend_error_logs',    90,  'storage limitation (Art. 5(1)(e))', 'backend error logs'),
    ('user_session',      'backend_user_sessions', 90,  'storage limitation (Art. 5(1)(e))', 'backend sessions (IP, user agent)'),
    ('social_posts',      'social_posts',          180, 'storage limitation (Art. 5(1)(e))', 'social posts and their authors'),
    ('audit_trail',       'audit_trail',           2190, 'accountability (Art. 5(2), 30): 6 years', 'shipped audit records'),
    ('collector_jobs',    'collector_jobs',        30,  'storage limitation (Art. 5(1)(e))', 'finished collection jobs'),
    ('deletion_requests', 'deletion_requests',     2190, 'accountability (Art. 5(2)): proof of erasure', 'closed erasure requests and their receipts'),
    ('export_requests',   'export_requests',       90,  'storage limitation (Art. 5(1)(e))', 'expired or failed export requests');

-- One row per policy run (action automated_deletion) and per operator edit
-- of a policy (action retention_policy_updated).  A run's row is written
-- when it starts (status running) and its rows_affected grows in the same
-- transaction as each deleted batch, so after a kill -9 it says exactly
-- what went; the next run finds it (status running, no lock held) and
-- resumes it with the same cutoff.
CREATE TABLE gdpr_audit_log (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    action        text        NOT NULL,
    user_id       text,                      -- operator; NULL = the worker
    data_type     text,
    target        text,
    cutoff        timestamptz,
    rows_affected bigint      NOT NULL DEFAULT 0,
    status        text        NOT NULL CHECK (status IN ('running', 'completed', 'failed')),
    error         text,
    started_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    details       jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX gdpr_audit_log_started_idx ON gdpr_audit_log (started_at);
CREATE INDEX gdpr_audit_log_running_idx ON gdpr_audit_log (data_type) WHERE status = 'running';

-- Retention deletes closed erasure requests with their steps.
ALTER TABLE gdpr_deletion_steps DROP CONSTRAINT gdpr_deletion_steps_request_id_fkey,
    ADD FOREIGN KEY (request_id) REFERENCES gdpr_deletion_requests (id) ON DELETE CASCADE;

-- Batches are found by age: stock_prices had no index leading with ts.
CREATE INDEX stock_prices_ts_idx ON stock_prices (ts);
