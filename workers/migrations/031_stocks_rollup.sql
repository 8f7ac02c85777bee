-- insite-stocks (docs/stocks.md, "Rollup"): 15-minute bars kept next to the
-- 1-minute rows, so a year of `1d` bars reads ~6,800 rows instead of
-- ~100,000.  15 minutes because every exchange zone's offset from UTC is a
-- multiple of 15 minutes: a local day (and a session hour starting at 09:30)
-- is always a whole number of these UTC-aligned buckets.
--
-- Maintained by statement triggers on stock_prices: every (symbol, bucket)
-- a statement touched is recomputed from its 1-minute rows (so inserts,
-- the collector's ON CONFLICT revisions, deletes and out-of-order minutes
-- are all exact), under a per-symbol advisory lock taken in a fixed order:
-- a transaction that recomputes a symbol's buckets waits for another that
-- is doing the same, and then (READ COMMITTED: a fresh snapshot per
-- statement) sees its minutes.  Per symbol, not per bucket: a bulk insert
-- of a year touches thousands of buckets, more locks than a transaction
-- may hold (max_locks_per_transaction), and the collector writes a symbol
-- from one place at a time anyway.
CREATE TABLE stock_bars_15m (
    symbol   text        NOT NULL,
    bucket   timestamptz NOT NULL,   -- date_bin('15 minutes', ts, epoch)
    open     numeric,                -- first minute's open
    high     numeric,
    low      numeric,
    close    numeric,                -- last minute's close
    volume   bigint,
    minutes  integer     NOT NULL,   -- 1-minute rows in the bucket
    last_ts  timestamptz NOT NULL,   -- start of the newest of them
    PRIMARY KEY (symbol, bucket)
);

CREATE FUNCTION stock_bars_15m_refresh(sym text, b timestamptz) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('insite.stock_bars_15m'), hashtext(sym));
    DELETE FROM stock_bars_15m WHERE symbol = sym AND bucket = b;
    INSERT INTO stock_bars_15m
    SELECT sym, b, (array_agg(open ORDER BY ts))[1], max(high), min(low),
           (array_agg(close ORDER BY ts DESC))[1], sum(volume), count(*), max(ts)
      FROM stock_prices
     WHERE symbol = sym AND interval = '1m' AND ts >= b AND ts < b + interval '15 minutes'
    HAVING count(*) > 0;
END $$;

-- The (symbol, bucket) pairs of a statement's 1-minute rows, in the lock
-- order.  Each event's trigger passes the rows its transition tables hold
-- (a transition table is visible only to a trigger that declares it).
CREATE FUNCTION stock_bars_15m_refresh_rows(syms text[], tss timestamptz[], ivs text[])
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    k record;
BEGIN
    FOR k IN
        SELECT DISTINCT s,
               date_bin('15 minutes', t, timestamptz '1970-01-01 00:00:00+00') AS b
          FROM unnest(syms, tss, ivs) AS u(s, t, i) WHERE i = '1m' ORDER BY 1, 2
    LOOP
        PERFORM stock_bars_15m_refresh(k.s, k.b);
    END LOOP;
END $$;

CREATE FUNCTION stock_bars_15m_on_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM stock_bars_15m_refresh_rows(array_agg(symbol), array_agg(ts), array_agg(interval))
       FROM new_rows;
    RETURN NULL;
END $$;

CREATE FUNCTION stock_bars_15m_on_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM stock_bars_15m_refresh_rows(array_agg(symbol), array_agg(ts), array_agg(interval))
       FROM (SELECT symbol, ts, interval FROM new_rows
             UNION SELECT symbol, ts, interval FROM old_rows) r;
    RETURN NULL;
END $$;

CREATE FUNCTION stock_bars_15m_on_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM stock_bars_15m_refresh_rows(array_agg(symbol), array_agg(ts), array_agg(interval))
       FROM old_rows;
    RETURN NULL;
END $$;

CREATE FUNCTION stock_bars_15m_on_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE stock_bars_15m;
    RETURN NULL;
END $$;

CREATE TRIGGER stock_bars_15m_ins AFTER INSERT ON stock_prices
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION stock_bars_15m_on_insert();
CREATE TRIGGER stock_bars_15m_upd AFTER UPDATE ON stock_prices
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION stock_bars_15m_on_update();
CREATE TRIGGER stock_bars_15m_del AFTER DELETE ON stock_prices
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION stock_bars_15m_on_delete();
CREATE TRIGGER stock_bars_15m_trunc AFTER TRUNCATE ON stock_prices
    FOR EACH STATEMENT EXECUTE FUNCTION stock_bars_15m_on_truncate();

-- What is stored already.
INSERT INTO stock_bars_15m
SELECT symbol, date_bin('15 minutes', ts, timestamptz '1970-01-01 00:00:00+00') AS b,
       (array_agg(open ORDER BY ts))[1], max(high), min(low),
       (array_agg(close ORDER BY ts DESC))[1], sum(volume), count(*), max(ts)
  FROM stock_prices WHERE interval = '1m' GROUP BY symbol, b;
