-- insite-gdpr (docs/gdpr-rights.md): consent, plan 5.3.
--
-- user_consents is the current state per (user, type); user_consent_events
-- is the ledger every grant and withdrawal is appended to, with the proof
-- (policy version, time, IP, user agent).  The ledger refuses UPDATE, and
-- DELETE except inside an erasure (SET LOCAL insite.erasure = 'on'): a
-- withdrawal never erases the history, only the data subject's erasure does.
CREATE TABLE user_consents (
    user_id        text        NOT NULL,
    consent_type   text        NOT NULL,
    granted        boolean     NOT NULL,
    policy_version text        NOT NULL,
    ip             text,
    user_agent     text,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, consent_type)
);

CREATE TABLE user_consent_events (
    id             bigserial   PRIMARY KEY,
    user_id        text        NOT NULL,
    consent_type   text        NOT NULL,
    granted        boolean     NOT NULL,
    policy_version text        NOT NULL,
    ip             text,
    user_agent     text,
    source         text        NOT NULL DEFAULT 'api',
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX user_consent_events_user_idx ON user_consent_events (user_id, created_at);

CREATE FUNCTION user_consent_events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('insite.erasure', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'user_consent_events is append-only';
END $$;

CREATE TRIGGER user_consent_events_append_only
    BEFORE UPDATE OR DELETE ON user_consent_events
    FOR EACH ROW EXECUTE FUNCTION user_consent_events_append_only();

-- users whose state is committed here but not yet in Redis (Redis was
-- down): the worker republishes them until Redis has them.
CREATE TABLE user_consent_sync (
    user_id        text        PRIMARY KEY,
    since          timestamptz NOT NULL DEFAULT now()
);
