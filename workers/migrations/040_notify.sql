-- insite-notify (docs/notify.md): alert rules evaluated on the live stream,
-- their durable state, the fired alerts (an outbox: delivery reads these
-- rows, never the in-memory event), every delivery attempt, templates in
-- 13 languages and per-user settings.

-- The platform plan's template tables.  Templates are loaded from
-- workers/notify/templates/*.json at start (ICU MessageFormat, checked
-- before they are stored); operators edit them with the templates API.
CREATE TABLE notification_templates (
    id          text        PRIMARY KEY,
    priority    text        NOT NULL CHECK (priority IN ('CRITICAL','HIGH','MEDIUM','LOW')),
    description text        NOT NULL DEFAULT '',
    sample      jsonb       NOT NULL DEFAULT '{}',
    edited      boolean     NOT NULL DEFAULT false,   -- by an operator: the shipped file no longer overwrites it
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE notification_translations (
    template_id text        NOT NULL REFERENCES notification_templates (id) ON DELETE CASCADE,
    lang        text        NOT NULL,
    title       text        NOT NULL,
    body        text        NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (template_id, lang)
);

-- One row per user with template_id = '' (the defaults) and optional rows
-- per template overriding "enabled" (and the priority floor) for it.
CREATE TABLE user_notification_settings (
    user_id        text     NOT NULL,
    template_id    text     NOT NULL DEFAULT '',
    enabled        boolean  NOT NULL DEFAULT true,
    languages      text[]   NOT NULL DEFAULT '{en}',
    time_zone      text     NOT NULL DEFAULT 'UTC',
    channels       text[]   NOT NULL DEFAULT '{websocket}',
    quiet_start    smallint CHECK (quiet_start BETWEEN 0 AND 1439),  -- minutes after local midnight
    quiet_end      smallint CHECK (quiet_end BETWEEN 0 AND 1439),
    email          text,
    webhook_url    text,
    webhook_secret text,
    rate_per_hour  integer  NOT NULL DEFAULT 60 CHECK (rate_per_hour BETWEEN 1 AND 10000),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, template_id)
);

CREATE TABLE alert_rules (
    id          bigserial   PRIMARY KEY,
    user_id     text        NOT NULL,
    symbol      text        NOT NULL,
    kind        text        NOT NULL,
    params      jsonb       NOT NULL,     -- the validated rule body (docs/notify.md)
    cooldown_s  integer     NOT NULL DEFAULT 0,
    recurring   boolean     NOT NULL DEFAULT true,
    priority    text        NOT NULL DEFAULT 'HIGH',
    enabled     boolean     NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX alert_rules_user_idx ON alert_rules (user_id, id);

-- Evaluation state, written in the same transaction as the alerts it
-- fires: side = which side of the threshold the last update was on
-- (0 unknown, 1 condition false, 2 condition true).
CREATE TABLE alert_rule_state (
    rule_id        bigint      PRIMARY KEY REFERENCES alert_rules (id) ON DELETE CASCADE,
    side           smallint    NOT NULL DEFAULT 0,
    last_fired_ms  bigint      NOT NULL DEFAULT 0,
    fired_count    integer     NOT NULL DEFAULT 0,
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- Samples of symbols that have windowed rules (% change, volume spike,
-- sentiment shift), so a restart keeps its windows; pruned past the
-- longest window.
CREATE TABLE notify_samples (
    symbol  text             NOT NULL,
    metric  smallint         NOT NULL,   -- 0 price, 1 sentiment
    ts_ms   bigint           NOT NULL,
    value   double precision NOT NULL,
    volume  double precision NOT NULL DEFAULT 0
);
CREATE INDEX notify_samples_idx ON notify_samples (symbol, metric, ts_ms);

-- Kafka positions processed into this database, per consumer group: a
-- message at an offset below next_offset was already evaluated (its effects
-- are committed here), so a redelivery after a crash is skipped.
CREATE TABLE notify_offsets (
    grp         text    NOT NULL,
    topic       text    NOT NULL,
    partition   integer NOT NULL,
    next_offset bigint  NOT NULL,
    PRIMARY KEY (grp, topic, partition)
);

-- The user's alerts.  state: new (fired, not planned yet) -> held (quiet
-- hours, until due_ms) -> planned (deliveries created); or suppressed
-- (notifications off), capped (over the user's rate), collapsed (counted in
-- a later alert of the same rule), digested (counted in a digest).
CREATE TABLE notifications (
    id           bigserial   PRIMARY KEY,
    event_id     uuid        NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    user_id      text        NOT NULL,
    rule_id      bigint,
    template_id  text        NOT NULL,
    priority     text        NOT NULL,
    args         jsonb       NOT NULL,
    state        text        NOT NULL DEFAULT 'new',
    due_ms       bigint      NOT NULL DEFAULT 0,     -- held until (quiet hours)
    planned_ms   bigint,                             -- when its deliveries were created
    collapsed    integer     NOT NULL DEFAULT 1,   -- how many alerts this message stands for
    lang         text,
    title        text,
    body         text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    fired_ms     bigint      NOT NULL,
    read_at      timestamptz
);
CREATE INDEX notifications_user_idx ON notifications (user_id, id DESC);
CREATE INDEX notifications_todo_idx ON notifications (state, due_ms) WHERE state IN ('new','held');

CREATE TABLE notification_deliveries (
    id              bigserial   PRIMARY KEY,
    notification_id bigint      NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
    channel         text        NOT NULL,     -- websocket, kafka, email, webhook
    status          text        NOT NULL DEFAULT 'pending',   -- pending, delivered, failed
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_ms bigint      NOT NULL DEFAULT 0,
    error           text,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (notification_id, channel)
);
CREATE INDEX notification_deliveries_todo_idx ON notification_deliveries (next_attempt_ms)
    WHERE status = 'pending';
