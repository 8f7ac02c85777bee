-- insite-stocks (docs/stocks.md, "Bars cache"): the worker keeps settled
-- bars pages in memory; a change to the minute rows they were built from
-- must reach it.  The rollup triggers of migration 031 already see every
-- statement that inserts, revises or deletes minute rows, per symbol: they
-- now also NOTIFY insite_stock_bars, one message per symbol and statement,
-- "<symbol> <first> <last>" (epoch seconds of the first and last changed
-- minute), and "*" on TRUNCATE.  NOTIFY is delivered on commit (nothing for
-- a rolled-back statement) and folds identical messages of a transaction.
CREATE OR REPLACE FUNCTION stock_bars_15m_refresh_rows(syms text[], tss timestamptz[], ivs text[])
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
    PERFORM pg_notify('insite_stock_bars', s || ' ' || floor(extract(epoch FROM min(t)))::bigint
                                               || ' ' || ceil(extract(epoch FROM max(t)))::bigint)
       FROM unnest(syms, tss, ivs) AS u(s, t, i) WHERE i = '1m' GROUP BY s;
END $$;

CREATE OR REPLACE FUNCTION stock_bars_15m_on_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE stock_bars_15m;
    PERFORM pg_notify('insite_stock_bars', '*');
    RETURN NULL;
END $$;
