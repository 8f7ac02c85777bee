# insite-stocks: a quote's market_state follows the exchange calendar
# (market_calendar, migration 032) over the weekday default.  The row for
# today's local date (America/New_York) is set by the test, so the answer
# is known whatever the day and hour the test runs at:
#   - 'closed' today -> CLOSED, even inside 09:30-16:00 on a weekday;
#   - a 'session' around now (even on a weekend, even at night) -> REGULAR;
#   - a 'session' that ended a minute ago, before 16:00 -> POST until 17:00
#     (an early close), or CLOSED after;
# and the shipped calendar holds the 2025-2027 holidays and early closes.
use strict;
use warnings;
use lib 't/lib';

use JSON::PP ();
use Test::More;

use Insite::Stocks;

for my $v (qw(INSITE_REDIS_PORT INSITE_PG_DSN)) {
    plan skip_all => "$v not set (run under scripts/test.sh)" unless $ENV{$v};
}
plan skip_all => 'build/bin/insite-stocks not built' unless -x 'build/bin/insite-stocks';

my $json = JSON::PP->new->canonical;
my $s = Insite::Stocks->new(tag => "st504_$$");
$s->start_worker;
$s->psql("INSERT INTO stock_prices (symbol, ts, open, high, low, close, volume, interval, source)"
       . " VALUES ('CALX', now() - interval '5 minutes', 10, 11, 9, 10.5, 100, '1m', 'replay')");

sub state_now {
    my $r = $s->get('/api/v1/stocks/CALX');
    my $d = eval { $json->decode($r->{body}) } // {};
    diag "$r->{status} $r->{body}" unless $r->{status} == 200;
    return $d->{market_state} // '';
}

# today's local date and minute of the day, from PostgreSQL's clock (the
# worker's): [date, minutes since local midnight]
my ($day, $min) = split /\|/, $s->psql("SELECT (now() AT TIME ZONE 'America/New_York')::date,"
    . " (extract(epoch FROM (now() AT TIME ZONE 'America/New_York')::time) / 60)::int");
chomp $min;
sub hhmm { my $m = shift; $m = 0 if $m < 0; $m = 1439 if $m > 1439; sprintf '%02d:%02d', int($m / 60), $m % 60 }
sub set_today {
    my ($kind, $open, $close) = @_;
    my ($o, $c) = map { defined $_ ? "'$_'" : 'NULL' } ($open, $close);
    $s->psql("INSERT INTO market_calendar VALUES ('US', '$day', '$kind', $o, $c, 'test day')"
           . " ON CONFLICT (calendar, day) DO UPDATE SET kind = EXCLUDED.kind,"
           . " open_time = EXCLUDED.open_time, close_time = EXCLUDED.close_time");
}

set_today('closed');
is(state_now(), 'CLOSED', "today ($day) a full holiday: CLOSED");

# a session from before now to after now (within the day)
set_today('session', hhmm($min - 60), $min + 60 > 1439 ? '23:59:59' : hhmm($min + 60));
SKIP: {
    skip 'within a minute of local midnight', 1 if $min < 1 || $min > 1438;
    is(state_now(), 'REGULAR', "a special session around now ($day " . hhmm($min) . '): REGULAR');
}

# an early close that was a minute ago
SKIP: {
    skip 'the test needs a local time between 00:02 and 15:59', 1 if $min < 2 || $min >= 16 * 60;
    set_today('session', '00:00', hhmm($min - 1));
    is(state_now(), $min < 17 * 60 ? 'POST' : 'CLOSED', 'after an early close: POST until 17:00');
}

# the shipped rows (the test schema holds migration 032's data)
my $n = $s->psql("SELECT count(*) FILTER (WHERE kind = 'closed'), count(*) FILTER (WHERE kind = 'session')"
               . " FROM market_calendar WHERE calendar = 'US' AND day BETWEEN '2025-01-01' AND '2027-12-31'"
               . " AND name <> 'test day'");
my ($closed, $early) = $n =~ /(\d+)\|(\d+)/;
ok($closed >= 30, "$closed full holidays 2025-2027");
ok($early >= 6, "$early early closes 2025-2027");
like($s->psql("SELECT kind || ' ' || name FROM market_calendar WHERE calendar = 'US' AND day = '2026-11-26'"),
     qr/^closed Thanksgiving/, '2026-11-26 is Thanksgiving');
like($s->psql("SELECT close_time FROM market_calendar WHERE calendar = 'US' AND day = '2026-11-27'"),
     qr/^13:00/, 'the day after closes at 13:00');

$s->stop_worker;
done_testing();
