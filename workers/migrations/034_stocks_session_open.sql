-- insite-stocks (docs/stocks.md, "Bucket alignment"): 1h bars start at the
-- session open, like Yahoo's (09:30, 10:30, ..., 15:30 cut at 16:00 for
-- New York), not on the hour.  The open is the exchange's local time;
-- symbols without a stock_symbols row use 09:30 (as they use
-- stocks.default_timezone).  Other exchanges: London 08:00, Tokyo 09:00,
-- Frankfurt (Xetra) 09:00, Hong Kong 09:30, Mumbai 09:15.
ALTER TABLE stock_symbols ADD COLUMN session_open time NOT NULL DEFAULT '09:30';
