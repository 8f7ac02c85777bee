-- Initial schema for the workers.  Applied by insite_pg_migrate() inside a
-- transaction holding the migrations advisory lock: no BEGIN/COMMIT here.

-- OHLCV bars; one row per symbol, bar start and interval ("1m", "1d", ...).
CREATE TABLE stock_prices (
    symbol     text        NOT NULL,
    ts         timestamptz NOT NULL,
    open       numeric,
    high       numeric,
    low        numeric,
    close      numeric,
    volume     bigint,
    interval   text        NOT NULL,
    source     text        NOT NULL,
    UNIQUE (symbol, ts, interval)
);

-- Posts fetched from social sources; (source, source_id) makes refetches
-- idempotent (INSERT ... ON CONFLICT DO NOTHING).
CREATE TABLE social_posts (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source     text        NOT NULL,
    source_id  text        NOT NULL,
    symbols    text[]      NOT NULL DEFAULT '{}',
    author     text,
    text       text,
    url        text,
    created_at timestamptz,
    fetched_at timestamptz NOT NULL DEFAULT now(),
    raw        jsonb,
    UNIQUE (source, source_id)
);
CREATE INDEX social_posts_symbols_idx ON social_posts USING gin (symbols);
CREATE INDEX social_posts_created_at_idx ON social_posts (created_at);

-- Aggregated sentiment per symbol and window ("5m", "1h", ...) ending at ts.
CREATE TABLE sentiment_data (
    symbol        text        NOT NULL,
    "window"      text        NOT NULL,
    ts            timestamptz NOT NULL,
    mean_compound double precision,
    pos_count     integer     NOT NULL DEFAULT 0,
    neg_count     integer     NOT NULL DEFAULT 0,
    neu_count     integer     NOT NULL DEFAULT 0,
    mentions      integer     NOT NULL DEFAULT 0,
    PRIMARY KEY (symbol, "window", ts)
);

-- Collection jobs requested through a worker's HTTP API.
CREATE TABLE collection_jobs (
    job_id     uuid        PRIMARY KEY,
    kind       text        NOT NULL,
    symbols    text[]      NOT NULL DEFAULT '{}',
    status     text        NOT NULL DEFAULT 'pending'
               CHECK (status IN ('pending', 'running', 'done', 'failed', 'cancelled')),
    progress   real        NOT NULL DEFAULT 0 CHECK (progress >= 0 AND progress <= 1),
    error      text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX collection_jobs_status_idx ON collection_jobs (status, created_at);
