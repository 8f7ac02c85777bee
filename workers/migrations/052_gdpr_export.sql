-- Exports (GDPR Art. 15/20, the plan's gdpr_data_exports): the archive is
-- one JSON document kept until expires_at, then deleted by the worker.
CREATE TABLE gdpr_data_exports (
    id             uuid        PRIMARY KEY,
    user_id        text        NOT NULL,
    status         text        NOT NULL DEFAULT 'pending'
                   CHECK (status IN ('pending', 'ready', 'failed', 'expired')),
    requested_at   timestamptz NOT NULL DEFAULT now(),
    ready_at       timestamptz,
    expires_at     timestamptz,
    archive        text,
    error          text
);
CREATE INDEX gdpr_data_exports_user_idx ON gdpr_data_exports (user_id);
