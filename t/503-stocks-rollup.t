# insite-stocks: 1d bars read the 15-minute rollup (stock_bars_15m,
# migration 031) for whole buckets and the minute rows at cut edges.  The
# rollup is kept by triggers on stock_prices, so every way the minute rows
# change must show in the 1d bars, each compared with a Perl aggregation of
# the minute rows PostgreSQL holds at that moment:
#   - a bulk insert of 12 weeks (the 2024-03-10 US DST day of 23 h inside),
#     rows inserted out of order, over several statements;
#   - ranges on 15-minute bounds (rollup only) and cut mid-bucket (edges);
#   - a revised minute (the collector's ON CONFLICT DO UPDATE) raising and
#     then lowering the day's high (a max-only merge would keep the old one);
#   - a deleted first minute (the open moves to the next minute);
#   - cursor pages of 1d over the rollup visit every day once.
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
my $s = Insite::Stocks->new(tag => "st503_$$");
$s->start_worker;     # applies the migrations to the test's schema

# 2024-01-29 .. 2024-04-22 (Mondays), sessions 14:30Z..21:00Z in winter and
# 13:30Z..20:00Z after 2024-03-10, plus minutes at night (pre/post market)
my ($from, $to) = (1706486400, 1713744000);
my $ins = "INSERT INTO stock_prices (symbol, ts, open, high, low, close, volume, interval, source)";
my $vals = "SELECT 'RLX', to_timestamp(t), 100 + (t / 60 % 97) * 0.01, 101 + (t / 60 % 89) * 0.01,"
         . " 99 - (t / 60 % 83) * 0.01, 100 + (t / 60 % 79) * 0.01, 1000 + t / 60 % 991, '1m', 'replay'"
         . " FROM generate_series($from, $to - 60, 60) t"
         . " WHERE extract(isodow FROM to_timestamp(t) AT TIME ZONE 'America/New_York') < 6"
         . " AND (extract(hour FROM to_timestamp(t) AT TIME ZONE 'America/New_York') BETWEEN 9 AND 15"
         . "      OR t / 60 % 17 = 0)";
# newer half first, then the older half, then a few minutes out of order
$s->psql("$ins $vals AND t >= 1710000000 AND t / 60 % 23 <> 5");
$s->psql("$ins $vals AND t < 1710000000 AND t / 60 % 23 <> 5");
$s->psql("$ins $vals AND t / 60 % 23 = 5 ORDER BY random()");
# a quote row is not a minute: it must not enter the rollup
$s->psql("$ins VALUES ('RLX', to_timestamp(1710165000), 999, 999, 999, 999, 9, 'quote', 'replay')");

sub get_json {
    my ($path) = @_;
    my $r = $s->get($path);
    return ($r, eval { $json->decode($r->{body}) });
}

sub days_ok {
    my ($f, $t, $what) = @_;
    my ($r, $d) = get_json("/api/v1/stocks/RLX/bars?interval=1d&from=$f&to=$t&limit=5000");
    is($r->{status}, 200, "$what: 200") or diag $r->{body};
    my $want = Insite::Stocks::aggregate($s->minute_bars('RLX', $f, $t), '1d');
    Insite::Stocks::same_bars($d->{bars} // [], $want, "$what: 1d = the Perl aggregation");
    return $d;
}

my $rows = $s->psql("SELECT count(*), sum(minutes) FROM stock_bars_15m WHERE symbol = 'RLX'");
my ($nb, $nm) = $rows =~ /(\d+)\|(\d+)/;
my $stored = $s->psql("SELECT count(*) FROM stock_prices WHERE symbol = 'RLX' AND interval = '1m'");
$stored =~ s/\s+//g;
ok($nb > 0 && $nb * 4 < $stored, "the rollup holds $nb buckets for $stored minute rows");
is($nm, $stored, 'its buckets count every minute row once (and no quote)');

my $d = days_ok($from, $to, 'aligned range (rollup only)');
ok((grep { $_->{time} eq '2024-03-11T04:00:00.000Z' } @{ $d->{bars} // [] }) == 1,
   'the Monday after the DST change starts at local midnight (EDT, 04:00Z)');
days_ok($from + 7 * 60 + 13, $to - 3 * 60 - 7, 'cut mid-bucket at both ends (minute edges)');
days_ok(1710163800 + 120, 1710163800 + 600, 'a range inside one bucket (1710163800: a 15-minute bound)');

# a revision raises the day's high, a second one lowers it again
my $m = 1710768600;   # 2024-03-18T13:30Z, a session minute
my $upsert = "$ins VALUES ('RLX', to_timestamp($m), %s, %s, 1, 100, 5, '1m', 'yahoo')"
           . " ON CONFLICT (symbol, ts, interval) DO UPDATE SET open = EXCLUDED.open,"
           . " high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close,"
           . " volume = EXCLUDED.volume, source = EXCLUDED.source";
# (each change waits for the worker's bars cache to have its notification)
ok($s->psql_change(sprintf($upsert, 100, 500)), 'the worker is notified of the revision');
$d = days_ok($from, $to, 'after a revision raising a high');
ok((grep { $_->{high} == 500 } @{ $d->{bars} // [] }) == 1, 'the revised high shows in its day');
ok($s->psql_change(sprintf($upsert, 100, 101)), 'and of the second');
$d = days_ok($from, $to, 'after a revision lowering it');
ok(!(grep { $_->{high} == 500 } @{ $d->{bars} // [] }), 'the old high is gone (recomputed, not merged)');

# deleting a day's first minute moves its open
my $first = $s->psql("SELECT extract(epoch FROM min(ts))::bigint FROM stock_prices"
                   . " WHERE symbol = 'RLX' AND interval = '1m' AND ts >= to_timestamp(1711339200)");
$first =~ s/\s+//g;
ok($s->psql_change("DELETE FROM stock_prices WHERE symbol = 'RLX' AND interval = '1m' AND ts = to_timestamp($first)"),
   'and of the delete');
days_ok($from, $to, 'after deleting a first minute');

# pages of 1d over the rollup: every day once, as one page
my (@paged, $pages);
my $url = "/api/v1/stocks/RLX/bars?interval=1d&from=$from&to=$to&limit=7";
while (1) {
    my ($r, $p) = get_json($url);
    last unless $r->{status} == 200 && ++$pages < 100;
    push @paged, @{ $p->{bars} };
    last unless defined $p->{next_cursor};
    $url = "/api/v1/stocks/RLX/bars?interval=1d&from=$from&to=$to&limit=7&cursor=$p->{next_cursor}";
}
my ($r1, $one) = get_json("/api/v1/stocks/RLX/bars?interval=1d&from=$from&to=$to&limit=5000");
ok($pages > 5, "$pages pages of 7 days");
is_deeply(\@paged, $one->{bars}, 'pages of 1d = one page');

$s->stop_worker;
done_testing();
