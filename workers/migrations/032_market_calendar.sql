-- insite-stocks (docs/stocks.md, "Market state"): the exchange calendar.
-- A row overrides the weekday default (Mon-Fri 09:30-16:00 regular, 04:00
-- pre, until 20:00 post; weekends closed) for one local day of a calendar:
--   kind 'closed'   a full holiday: CLOSED all day;
--   kind 'session'  a day with its own regular session [open_time,
--                   close_time) (an early close: 09:30-13:00), pre-market
--                   from 04:00, post-market until 17:00 after an early
--                   close (20:00 otherwise).
-- Symbols use calendar 'US' (NYSE and Nasdaq keep the same holidays and
-- early closes); stock_symbols.calendar names another one.
--
-- Source of the 2025-2027 rows: the holiday and early-close schedules the
-- exchanges publish (NYSE Group "Holidays & Trading Hours", Nasdaq "Stock
-- Market Holiday Schedule"), transcribed by hand on 2026-12-02 from the
-- published lists, including the 2025-01-09 closure for the National Day
-- of Mourning (President Carter).  Not fetched at build time: a new year,
-- or an unscheduled closure, is a new migration (or an INSERT by the
-- operator); an exchange announcement wins over these rows.
CREATE TABLE market_calendar (
    calendar   text NOT NULL,
    day        date NOT NULL,          -- the exchange's local date
    kind       text NOT NULL CHECK (kind IN ('closed', 'session')),
    open_time  time,                   -- 'session' only
    close_time time,
    name       text NOT NULL,
    PRIMARY KEY (calendar, day),
    CHECK (kind = 'closed' OR (open_time IS NOT NULL AND close_time > open_time))
);

ALTER TABLE stock_symbols ADD COLUMN calendar text NOT NULL DEFAULT 'US';

INSERT INTO market_calendar (calendar, day, kind, open_time, close_time, name) VALUES
    ('US', '2025-01-01', 'closed', NULL, NULL, 'New Year''s Day'),
    ('US', '2025-01-09', 'closed', NULL, NULL, 'National Day of Mourning (President Carter)'),
    ('US', '2025-01-20', 'closed', NULL, NULL, 'Martin Luther King, Jr. Day'),
    ('US', '2025-02-17', 'closed', NULL, NULL, 'Washington''s Birthday'),
    ('US', '2025-04-18', 'closed', NULL, NULL, 'Good Friday'),
    ('US', '2025-05-26', 'closed', NULL, NULL, 'Memorial Day'),
    ('US', '2025-06-19', 'closed', NULL, NULL, 'Juneteenth National Independence Day'),
    ('US', '2025-07-03', 'session', '09:30', '13:00', 'Early close before Independence Day'),
    ('US', '2025-07-04', 'closed', NULL, NULL, 'Independence Day'),
    ('US', '2025-09-01', 'closed', NULL, NULL, 'Labor Day'),
    ('US', '2025-11-27', 'closed', NULL, NULL, 'Thanksgiving Day'),
    ('US', '2025-11-28', 'session', '09:30', '13:00', 'Early close after Thanksgiving'),
    ('US', '2025-12-24', 'session', '09:30', '13:00', 'Early close on Christmas Eve'),
    ('US', '2025-12-25', 'closed', NULL, NULL, 'Christmas Day'),
    ('US', '2026-01-01', 'closed', NULL, NULL, 'New Year''s Day'),
    ('US', '2026-01-19', 'closed', NULL, NULL, 'Martin Luther King, Jr. Day'),
    ('US', '2026-02-16', 'closed', NULL, NULL, 'Washington''s Birthday'),
    ('US', '2026-04-03', 'closed', NULL, NULL, 'Good Friday'),
    ('US', '2026-05-25', 'closed', NULL, NULL, 'Memorial Day'),
    ('US', '2026-06-19', 'closed', NULL, NULL, 'Juneteenth National Independence Day'),
    ('US', '2026-07-03', 'closed', NULL, NULL, 'Independence Day (observed)'),
    ('US', '2026-09-07', 'closed', NULL, NULL, 'Labor Day'),
    ('US', '2026-11-26', 'closed', NULL, NULL, 'Thanksgiving Day'),
    ('US', '2026-11-27', 'session', '09:30', '13:00', 'Early close after Thanksgiving'),
    ('US', '2026-12-24', 'session', '09:30', '13:00', 'Early close on Christmas Eve'),
    ('US', '2026-12-25', 'closed', NULL, NULL, 'Christmas Day'),
    ('US', '2027-01-01', 'closed', NULL, NULL, 'New Year''s Day'),
    ('US', '2027-01-18', 'closed', NULL, NULL, 'Martin Luther King, Jr. Day'),
    ('US', '2027-02-15', 'closed', NULL, NULL, 'Washington''s Birthday'),
    ('US', '2027-03-26', 'closed', NULL, NULL, 'Good Friday'),
    ('US', '2027-05-31', 'closed', NULL, NULL, 'Memorial Day'),
    ('US', '2027-06-18', 'closed', NULL, NULL, 'Juneteenth National Independence Day (observed)'),
    ('US', '2027-07-05', 'closed', NULL, NULL, 'Independence Day (observed)'),
    ('US', '2027-09-06', 'closed', NULL, NULL, 'Labor Day'),
    ('US', '2027-11-25', 'closed', NULL, NULL, 'Thanksgiving Day'),
    ('US', '2027-11-26', 'session', '09:30', '13:00', 'Early close after Thanksgiving'),
    ('US', '2027-12-24', 'closed', NULL, NULL, 'Christmas Day (observed)');
