-- insite-auditd (docs/gdpr.md): the audit trail shipped from the nginx
-- journals, the shipper's durable positions, chain incidents and signed
-- checkpoints.

-- One row per journal record; id is the record's uuid, so shipping is
-- idempotent.  record keeps the exact journal line, so its hash can be
-- recomputed from the database alone (SHA-256 of prev_hash || the line up
-- to ,"hash").
CREATE TABLE gdpr_audit_trail (
    id          uuid        PRIMARY KEY,
    ts          timestamptz NOT NULL,
    user_id     text,
    access_type text        NOT NULL,
    data_type   text,
    method      text,
    path        text,
    status      integer     NOT NULL,
    result      boolean     NOT NULL,
    ip          text,
    request_id  text,
    worker      text        NOT NULL,
    seq         bigint      NOT NULL,
    prev_hash   text        NOT NULL,
    hash        text        NOT NULL,
    source      text        NOT NULL,
    record      text        NOT NULL,
    shipped_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX gdpr_audit_trail_user_ts_idx ON gdpr_audit_trail (user_id, ts DESC);
CREATE INDEX gdpr_audit_trail_ts_idx ON gdpr_audit_trail (ts DESC);

-- Where the shipper is in each chain: updated in the transaction that
-- inserts the rows it covers.
CREATE TABLE gdpr_audit_positions (
    source     text        NOT NULL,
    chain      text        NOT NULL,
    file       text        NOT NULL,
    "offset"   bigint      NOT NULL,
    seq        bigint      NOT NULL,
    hash       text        NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, chain)
);

-- Broken chains, malformed or truncated journals (and, later, other
-- security findings).
CREATE TABLE security_incidents (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    detected_at timestamptz NOT NULL DEFAULT now(),
    source      text        NOT NULL,
    kind        text        NOT NULL,
    severity    text        NOT NULL CHECK (severity IN ('LOW', 'MEDIUM', 'HIGH', 'CRITICAL')),
    chain       text,
    file        text,
    file_offset bigint,
    seq         bigint,
    details     jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX security_incidents_detected_idx ON security_incidents (detected_at DESC);

-- Signed chain heads; payload is the exact signed text (it names the
-- previous checkpoint's id and signature).
CREATE TABLE gdpr_audit_checkpoints (
    source     text        NOT NULL,
    id         bigint      NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    payload    text        NOT NULL,
    signature  text        NOT NULL,
    PRIMARY KEY (source, id)
);
