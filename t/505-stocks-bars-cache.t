# insite-stocks: the worker's cache of settled bars pages (bars_cache.h)
# and its invalidation by PostgreSQL (NOTIFY insite_stock_bars from the
# rollup triggers, migration 033):
#   - a settled page asked twice is served from the cache the second time
#     (the worker's hit counter moves, the bytes and the ETag are the same,
#     If-None-Match gives 304);
#   - a revised minute (the collector's ON CONFLICT DO UPDATE), a late
#     minute inserted and a deleted minute in a settled day are in the very
#     next answer once the worker has the notification, for 1m, 5m and 1d
#     pages, each equal to a Perl aggregation of the rows PostgreSQL holds;
#   - a change drops only the pages it touches: the other day of the same
#     symbol and another symbol's page stay cached;
#   - a page that may still change (its range reaches now) is not cached;
#   - with the listener's session killed, nothing stale is served and the
#     cache works again once it is back; its session has TCP keepalives, so
#     a half-open connection ends too.
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
my $tag = "st505_$$";
my $s = Insite::Stocks->new(tag => $tag);
# the worker's sessions carry the test's name, so the test finds its listener
$s->start_worker(INSITE_PG_DSN => "$s->{dsn}&application_name=$tag");

# two settled days of CCH (2024-10-01, 2024-10-02) and one of CCX,
# sessions 13:30Z..20:00Z
my ($d1, $d2) = (1727740800, 1727827200);
my $ins = "INSERT INTO stock_prices (symbol, ts, open, high, low, close, volume, interval, source)";
for my $sym (qw(CCH CCX)) {
    $s->psql("$ins SELECT '$sym', to_timestamp(t), 100 + (t / 60 % 97) * 0.01,"
           . " 101 + (t / 60 % 89) * 0.01, 99 - (t / 60 % 83) * 0.01, 100 + (t / 60 % 79) * 0.01,"
           . " 1000 + t / 60 % 991, '1m', 'replay' FROM generate_series(0, 389) m,"
           . " LATERAL (SELECT d + 48600 + m * 60 AS t FROM unnest(ARRAY[$d1, $d2]) d) x");
}
my $upsert = "$ins VALUES ('CCH', to_timestamp(%d), %s, %s, %s, %s, %d, '1m', 'yahoo')"
           . " ON CONFLICT (symbol, ts, interval) DO UPDATE SET open = EXCLUDED.open,"
           . " high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close,"
           . " volume = EXCLUDED.volume, source = EXCLUDED.source";

sub page {
    my ($sym, $iv, $from, %h) = @_;
    my $r = $s->get("/api/v1/stocks/$sym/bars?interval=$iv&from=$from&to=" . ($from + 86400)
                    . "&limit=5000", %h);
    return ($r, eval { $json->decode($r->{body}) });
}

sub counts { map { $s->counter("bars_cache_$_") } qw(hits misses) }

# the page equals the Perl aggregation of what PostgreSQL holds now
sub fresh_ok {
    my ($sym, $iv, $from, $what) = @_;
    my ($r, $d) = page($sym, $iv, $from);
    is($r->{status}, 200, "$what: 200") or diag $r->{body};
    Insite::Stocks::same_bars($d->{bars} // [],
        Insite::Stocks::aggregate($s->minute_bars($sym, $from, $from + 86400), $iv),
        "$what: $iv = the aggregation of the rows stored now");
    return ($r, $d);
}

# a change is applied when the worker's invalidation counter has moved
sub change {
    my ($sql, $what) = @_;
    ok($s->psql_change($sql), "$what: the worker has the notification");
}

ok(Insite::Stocks::wait_for(10, sub { $s->log =~ /bars cache listener: online/ }), 'the cache is online');

# the listener only reads, so only TCP keepalives tell it that a half-open
# connection is gone, and libpq's default (keepalives on, the kernel's 2 h
# idle time) would take hours: its socket's keepalive timer runs at most
# 10 s; the worker's request sessions (which notice on their next query)
# keep the kernel's
sub keepalive_secs {
    my ($where) = @_;
    my $port = $s->psql("SELECT client_port FROM pg_stat_activity WHERE application_name = '$tag'"
                      . " AND client_port > 0 AND $where LIMIT 1");
    return -1 unless $port;
    my $ss = `ss -tnoH state established '( sport = :$port )'`;
    # ss prints the time left as e.g. "9.8sec", "4min33sec", "119min", "2.2ms"
    my ($left) = $ss =~ /timer:\(keepalive,([^,]+),/ or return -2;
    my %unit = (h => 3600, min => 60, sec => 1, ms => 0.001);
    my $secs = 0;
    $secs += $1 * $unit{$2} while $left =~ /([\d.]+)(h|min|sec|ms)/g;
    return $secs;
}
my $ka = keepalive_secs("query = 'LISTEN insite_stock_bars'");
ok($ka >= 0 && $ka <= 10, "the listener's session probes after at most 10 s idle ($ka s)");
page('CCX', '1d', $d2);                  # a request session exists (a page no check counts)
$ka = keepalive_secs("query <> 'LISTEN insite_stock_bars'");
ok($ka > 600, "... a request session keeps the kernel's idle time ($ka s: the check can tell)");

# ---- hits
my %etag;
for my $iv (qw(1m 5m 1d)) {
    my ($h0, $m0) = counts();
    my ($r1) = fresh_ok('CCH', $iv, $d1, "first $iv page");
    like($r1->{headers}{'cache-control'} // '', qr/max-age=86400/, "$iv: settled (max-age=86400)");
    my ($h1, $m1) = counts();
    is($m1, $m0 + 1, "$iv: the first request is a miss");
    my ($r2) = page('CCH', $iv, $d1);
    my ($h2, $m2) = counts();
    is($h2, $h1 + 1, "$iv: the second is a hit");
    is($m2, $m1, "$iv: ... and no miss");
    is($r2->{body}, $r1->{body}, "$iv: same bytes");
    is($r2->{headers}{etag}, $r1->{headers}{etag}, "$iv: same ETag");
    is($r2->{headers}{'last-modified'}, $r1->{headers}{'last-modified'}, "$iv: same Last-Modified");
    like($r2->{headers}{'cache-control'} // '', qr/max-age=86400/, "$iv: hit keeps max-age=86400");
    my ($r3) = page('CCH', $iv, $d1, 'If-None-Match' => $r1->{headers}{etag});
    is($r3->{status}, 304, "$iv: If-None-Match on a hit -> 304");
    is($r3->{headers}{etag}, $r1->{headers}{etag}, "$iv: 304 with the ETag");
    $etag{$iv} = $r1->{headers}{etag};
}
page('CCH', '1m', $d2);
page('CCX', '1m', $d1);

# ---- a revision in day 1 (13:31Z) raising the high
my $m = $d1 + 48600 + 60;
change(sprintf($upsert, $m, 100, 777, 98, 100.5, 5), 'revised minute');
my ($h0, $m0) = counts();
for my $iv (qw(1m 5m 1d)) {
    my ($r, $d) = fresh_ok('CCH', $iv, $d1, "after the revision");
    ok((grep { $_->{high} == 777 } @{ $d->{bars} // [] }) == 1, "$iv: the revised high is served");
    isnt($r->{headers}{etag}, $etag{$iv}, "$iv: a new ETag");
}
my ($h1, $m1) = counts();
is($m1, $m0 + 3, 'the three pages of day 1 were read again (misses)');
page('CCH', '1m', $d2);
page('CCX', '1m', $d1);
my ($h2, $m2) = counts();
is($h2, $h1 + 2, "day 2 and the other symbol's page are still cached (hits)");
is($m2, $m1, '... not read again');

# ---- a late minute, then a deleted one
my $late = $d1 + 48600 + 390 * 60;       # 20:00Z, after the last stored minute
change(sprintf($upsert, $late, 101, 102, 100, 101, 7), 'late minute');
my (undef, $dl) = fresh_ok('CCH', '1m', $d1, 'after a late minute');
is(scalar @{ $dl->{bars} // [] }, 391, 'the late minute is in the page');
fresh_ok('CCH', '1d', $d1, 'after a late minute');
change("DELETE FROM stock_prices WHERE symbol = 'CCH' AND ts = to_timestamp($d1 + 48600)",
       'deleted first minute');
(undef, $dl) = fresh_ok('CCH', '1m', $d1, 'after a deleted minute');
is(scalar @{ $dl->{bars} // [] }, 390, 'the deleted minute is gone');
fresh_ok('CCH', '1d', $d1, 'after a deleted minute');

# ---- a page still open (its range reaches now) is never cached
my $now = time;
$s->psql("$ins VALUES ('CCH', to_timestamp($now - $now % 60 - 60), 1, 2, 0.5, 1.5, 3, '1m', 'replay')");
($h0, $m0) = counts();
for (1 .. 2) {
    my $r = $s->get("/api/v1/stocks/CCH/bars?interval=1m&from=" . ($now - 3600) . "&to=" . ($now + 60));
    like($r->{headers}{'cache-control'} // '', qr/max-age=5\b/, 'an open page: max-age=5');
}
($h1, $m1) = counts();
is($h1, $h0, 'an open page is not served from the cache');
is($m1, $m0 + 2, '... both requests read PostgreSQL');

# ---- the listener's session killed: nothing stale, then back to caching
page('CCH', '1m', $d1);                  # cached
my $killed = $s->psql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    . " WHERE application_name = '$tag' AND query = 'LISTEN insite_stock_bars'");
is($killed, 1, "the worker's listening session is killed");
ok(Insite::Stocks::wait_for(10, sub { $s->log =~ /listener: lost/ }), 'the worker sees it lost');
$s->psql(sprintf($upsert, $m, 100, 555, 98, 100.5, 5));
my (undef, $dk) = fresh_ok('CCH', '1m', $d1, 'a revision while nobody listens');
ok((grep { $_->{high} == 555 } @{ $dk->{bars} // [] }) == 1, 'the revision is served');
ok(Insite::Stocks::wait_for(15, sub { $s->log =~ /listener: back/ }), 'the listener is back');
($h0) = counts();
page('CCH', '5m', $d1);
page('CCH', '5m', $d1);
($h1) = counts();
is($h1, $h0 + 1, 'the cache serves again once the listener is back');
fresh_ok('CCH', '5m', $d1, 'after the listener came back');

$s->stop_worker;
done_testing();
