-- Collector job API (insite-collector): job priority ("HIGH" = 2, "NORMAL" =
-- 1, "LOW" = 0; higher runs first) and the sources a sentiment job asked for.
ALTER TABLE collection_jobs ADD COLUMN priority smallint NOT NULL DEFAULT 1;
ALTER TABLE collection_jobs ADD COLUMN sources text[] NOT NULL DEFAULT '{}';
CREATE INDEX collection_jobs_pending_idx ON collection_jobs (priority DESC, created_at)
    WHERE status = 'pending';
