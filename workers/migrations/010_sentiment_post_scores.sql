-- The analytics pipeline's record of the social posts it scored: one row per
-- post (source + source_id, the collector's post id) and symbol.  Inserting
-- with ON CONFLICT DO NOTHING makes a redelivered Kafka message a no-op, and
-- the rows of the last 24 h rebuild the sliding windows after a restart.
CREATE TABLE sentiment_post_scores (
    source     text             NOT NULL,
    source_id  text             NOT NULL,
    symbol     text             NOT NULL,
    ts         timestamptz      NOT NULL,   -- the post's time in the windows
    compound   double precision NOT NULL,
    pos        double precision NOT NULL,
    neg        double precision NOT NULL,
    neu        double precision NOT NULL,
    scored_at  timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (source, source_id, symbol)
);
CREATE INDEX sentiment_post_scores_ts_idx ON sentiment_post_scores (ts);
