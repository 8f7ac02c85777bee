-- insite-stocks (docs/stocks.md): the index its bar queries read, the
-- symbols' reference data, and the users' watchlists.

-- Bars are read per symbol and interval over a time range, and aggregated
-- from the columns alone: an index-only scan (the UNIQUE (symbol, ts,
-- interval) index has interval last, so a range over ts also walks the
-- 'quote' rows).
CREATE INDEX stock_prices_symbol_interval_ts_idx
    ON stock_prices (symbol, interval, ts) INCLUDE (open, high, low, close, volume);

-- What the API says about a symbol besides its prices.  The collector does
-- not store Yahoo's meta (yet): these rows are reference data; a symbol
-- with prices but no row here is served with the default time zone and
-- null name/exchange.  timezone is the exchange's IANA zone: 1d bars are
-- the exchange's local days.
CREATE TABLE stock_symbols (
    symbol     text PRIMARY KEY,
    name       text,
    exchange   text,
    timezone   text NOT NULL DEFAULT 'America/New_York',
    currency   text
);
INSERT INTO stock_symbols (symbol, name, exchange, currency) VALUES
    ('AAPL', 'Apple Inc.', 'NASDAQ', 'USD'),
    ('MSFT', 'Microsoft Corporation', 'NASDAQ', 'USD'),
    ('GOOGL', 'Alphabet Inc.', 'NASDAQ', 'USD'),
    ('AMZN', 'Amazon.com, Inc.', 'NASDAQ', 'USD'),
    ('NVDA', 'NVIDIA Corporation', 'NASDAQ', 'USD'),
    ('META', 'Meta Platforms, Inc.', 'NASDAQ', 'USD'),
    ('TSLA', 'Tesla, Inc.', 'NASDAQ', 'USD'),
    ('AMD', 'Advanced Micro Devices, Inc.', 'NASDAQ', 'USD'),
    ('NFLX', 'Netflix, Inc.', 'NASDAQ', 'USD'),
    ('SPY', 'SPDR S&P 500 ETF Trust', 'NYSEArca', 'USD'),
    ('QQQ', 'Invesco QQQ Trust', 'NASDAQ', 'USD'),
    ('GME', 'GameStop Corp.', 'NYSE', 'USD'),
    ('AMC', 'AMC Entertainment Holdings, Inc.', 'NYSE', 'USD'),
    ('PLTR', 'Palantir Technologies Inc.', 'NASDAQ', 'USD');

-- Watchlists: personal data (docs/stocks.md, data map).  One row per user
-- and named list; position orders a user's lists, symbols keeps the
-- user's order.  Written only by PUT /api/v1/watchlists for the caller
-- (X-User-Id), replaced as a whole in one transaction.
CREATE TABLE watchlists (
    user_id    text        NOT NULL,
    name       text        NOT NULL,
    position   integer     NOT NULL,
    symbols    text[]      NOT NULL DEFAULT '{}',
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, name)
);
