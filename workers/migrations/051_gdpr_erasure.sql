-- insite-gdpr (docs/gdpr-rights.md): erasure requests, plan 5.2.
--
-- A request names its user in clear (user_id) only while it is open: the
-- completing statement clears it, and from then on the request is found by
-- user_pseudonym (a keyed hash, gdpr.pseudonym_key).  Steps record the
-- per-target progress, so a restarted worker resumes where it stopped.
CREATE TABLE gdpr_deletion_requests (
    id             uuid        PRIMARY KEY,
    user_id        text,
    user_pseudonym text        NOT NULL,
    status         text        NOT NULL DEFAULT 'pending'
                   CHECK (status IN ('pending', 'processing', 'completed', 'failed', 'cancelled')),
    requested_at   timestamptz NOT NULL DEFAULT now(),
    not_before     timestamptz NOT NULL DEFAULT now(),
    started_at     timestamptz,
    completed_at   timestamptz,
    attempts       integer     NOT NULL DEFAULT 0,
    error          text,
    receipt        text,
    signature      text
);
CREATE UNIQUE INDEX gdpr_deletion_requests_open_idx ON gdpr_deletion_requests (user_id)
    WHERE status IN ('pending', 'processing');
CREATE INDEX gdpr_deletion_requests_pseudonym_idx ON gdpr_deletion_requests (user_pseudonym);

CREATE TABLE gdpr_deletion_steps (
    request_id     uuid        NOT NULL REFERENCES gdpr_deletion_requests (id),
    target         text        NOT NULL,
    action         text        NOT NULL,
    rows           bigint      NOT NULL DEFAULT 0,
    done_at        timestamptz,
    error          text,
    PRIMARY KEY (request_id, target)
);

