# insite-stocks: bars aggregated by the worker equal an independent
# computation (here, in Perl) over the same minute bars, for every interval,
# on a recorded trading day and on a synthetic US DST day (2024-11-03 has
# 25 local hours in America/New_York); cursor pages visit every bar once;
# ETag/If-None-Match -> 304; Cache-Control and Last-Modified per resource.
# The minute bars are stored by the real collector (yahoo feed) from a
# recorded Yahoo response and a synthetic one, served by nginx.
use strict;
use warnings;
use lib 't/lib';

use JSON::PP ();
use Test::More;

use Insite::Stocks;

for my $v (qw(INSITE_REDIS_PORT INSITE_PG_DSN INSITE_KAFKA_BOOTSTRAP)) {
    plan skip_all => "$v not set (run under scripts/test.sh)" unless $ENV{$v};
}
my $shared = '../shared/fixtures/yahoo';
plan skip_all => "$shared missing" unless -d $shared;
plan skip_all => 'build/bin/insite-stocks not built' unless -x 'build/bin/insite-stocks';

my $json = JSON::PP->new->canonical;
my $s = Insite::Stocks->new(tag => "st500_$$");
my $aapl = do { local (@ARGV, $/) = ("$shared/chart_AAPL_1m_2024-10-02.json"); <> };
# 2024-11-02T12:00Z .. 2024-11-04T12:00Z: all of the local day 2024-11-03
my ($dst_from, $dst_to) = (1730548800, 1730721600);
$s->feed({ AAPL => $aapl, DSTX => Insite::Stocks::synthetic_chart('DSTX', $dst_from, $dst_to) },
         { AAPL => 389, DSTX => 2880 });
$s->start_worker;

sub get_json {
    my ($path, %h) = @_;
    my $r = $s->get($path, %h);
    my $d = eval { $json->decode($r->{body}) };
    return ($r, $d);
}

# every page of a bars query, following next_cursor
sub all_pages {
    my ($path) = @_;
    my (@bars, $pages);
    my $url = $path;
    while (1) {
        my ($r, $d) = get_json($url);
        die "GET $url: $r->{status} $r->{body}" unless $r->{status} == 200;
        $pages++;
        push @bars, @{ $d->{bars} };
        last unless defined $d->{next_cursor};
        die 'too many pages' if $pages > 5000;
        $url = "$path&cursor=$d->{next_cursor}";
    }
    return (\@bars, $pages);
}

sub same_bars { Insite::Stocks::same_bars(@_) }

# ---- aggregation: every interval, both days
my %days = (AAPL => [1727827200, 1728086400], DSTX => [$dst_from, $dst_to]);
for my $sym (sort keys %days) {
    my ($f, $t) = @{ $days{$sym} };
    my $minutes = $s->minute_bars($sym, $f, $t);
    ok(@$minutes >= 300, "$sym: " . scalar(@$minutes) . ' minute bars stored by the collector');
    for my $iv (qw(1m 5m 15m 1h 1d)) {
        my ($bars) = all_pages("/api/v1/stocks/$sym/bars?interval=$iv&from=$f&to=$t&limit=5000");
        same_bars($bars, Insite::Stocks::aggregate($minutes, $iv), "$sym $iv bars = the Perl aggregation");
    }
}

# the DST day itself: one 1d bar of 25 hours, starting at local midnight (EDT)
my (undef, $d) = get_json("/api/v1/stocks/DSTX/bars?interval=1d&from=$dst_from&to=$dst_to");
my ($sun) = grep { $_->{time} eq '2024-11-03T04:00:00.000Z' } @{ $d->{bars} };
is($sun && $sun->{minutes}, 1500, '2024-11-03 (America/New_York) is one bar of 25 h of minutes');
my ($mon) = grep { $_->{time} eq '2024-11-04T05:00:00.000Z' } @{ $d->{bars} };
ok($mon, 'the next local day starts at 05:00Z (EST)') or diag explain $d->{bars};
# a part of a bucket: from inside the first hour clips it (12:30Z..14:00Z
# on 2024-11-02, EDT: the hours 08:30-09:30 and 09:30-10:30 local)
my ($r2, $d2) = get_json("/api/v1/stocks/DSTX/bars?interval=1h&from=" . ($dst_from + 1800) . "&to=" . ($dst_from + 7200));
is_deeply([ map { $_->{minutes} } @{ $d2->{bars} } ], [60, 30], 'buckets hold only minutes inside from..to');

# 1h bars start at the session open, 09:30 New York, as Yahoo's: the
# recorded AAPL day (EDT) has 09:30, 10:30, ..., 15:30 (cut at 16:00)
my (undef, $h1) = get_json("/api/v1/stocks/AAPL/bars?interval=1h&from=1727827200&to=1727913600");
is_deeply([ map { $_->{time} } @{ $h1->{bars} } ],
          [ map { sprintf('2024-10-02T%02d:30:00.000Z', $_) } 13 .. 19 ],
          '1h (EDT): 13:30Z .. 19:30Z = 09:30 .. 15:30 New York');
ok(($h1->{bars}[-1]{minutes} // 99) <= 30 && ($h1->{bars}[0]{minutes} // 0) >= 59,
   'the first hour is whole, the last one holds 15:30-16:00 only');
# across the DST change (2024-11-03 01:00 EST): :30 in UTC on both sides,
# EDT's 09:30 = 13:30Z on Saturday, EST's 09:30 = 14:30Z on Sunday
my (undef, $hd) = get_json("/api/v1/stocks/DSTX/bars?interval=1h&from=$dst_from&to=$dst_to");
my %ht = map { $_->{time} => $_ } @{ $hd->{bars} };
ok($ht{'2024-11-02T13:30:00.000Z'} && $ht{'2024-11-03T14:30:00.000Z'}
   && !(grep { !/:30:00\.000Z$/ } keys %ht), '1h on the DST weekend: every bucket at :30 UTC');
is(scalar(grep { /^2024-11-03T0[4-7]/ } keys %ht), 4,
   'the repeated local hour 01:00-02:00 is two buckets (05:30Z and 06:30Z), not one');

# ---- pagination: every bar once, in order, for several page sizes
for my $case (['1m', 97], ['5m', 13], ['15m', 7], ['1h', 5], ['1d', 1]) {
    my ($iv, $lim) = @$case;
    my ($full) = all_pages("/api/v1/stocks/DSTX/bars?interval=$iv&from=$dst_from&to=$dst_to&limit=5000");
    my ($paged, $pages) = all_pages("/api/v1/stocks/DSTX/bars?interval=$iv&from=$dst_from&to=$dst_to&limit=$lim");
    my @t = map { $_->{time} } @$paged;
    my %seen;
    my @dup = grep { $seen{$_}++ } @t;
    is(scalar(@dup), 0, "$iv limit=$lim: no bar twice ($pages pages)");
    is_deeply(\@t, [ map { $_->{time} } @$full ], "$iv limit=$lim: every bar, in order");
    is_deeply($paged, $full, "$iv limit=$lim: the same bars as one page");
}

# ---- conditional GET, caching headers
my $path = "/api/v1/stocks/AAPL/bars?interval=5m&from=1727827200&to=1727913600";
my $r = $s->get($path);
is($r->{status}, 200, 'bars 200');
like($r->{headers}{etag} // '', qr/^"[0-9a-f]{32}"$/, 'strong ETag');
is($r->{headers}{'cache-control'}, 'public, max-age=86400', 'closed bars: cached for a day');
is($r->{headers}{'last-modified'}, 'Wed, 02 Oct 2024 20:00:00 GMT', 'Last-Modified: the end of the newest minute');
my $r304 = $s->get($path, 'If-None-Match' => $r->{headers}{etag});
is($r304->{status}, 304, 'If-None-Match with the ETag: 304');
is($r304->{body}, '', '304 has no body');
is($r304->{headers}{etag}, $r->{headers}{etag}, '304 repeats the ETag');
is($r304->{headers}{'cache-control'}, 'public, max-age=86400', '304 repeats Cache-Control');
is($s->get($path, 'If-None-Match' => '"0000", ' . $r->{headers}{etag})->{status}, 304, 'a list of tags');
is($s->get($path, 'If-None-Match' => '"00000000000000000000000000000000"')->{status}, 200,
   'another tag: 200 with the body');
my $other = $s->get("/api/v1/stocks/AAPL/bars?interval=15m&from=1727827200&to=1727913600");
isnt($other->{headers}{etag}, $r->{headers}{etag}, 'another body, another ETag');
my $now = time;
my $open = $s->get("/api/v1/stocks/AAPL/bars?interval=1m&from=" . ($now - 3600));
is($open->{headers}{'cache-control'}, 'public, max-age=5', 'bars up to now: a few seconds');

# ---- the page size limit
my ($rl, $dl) = get_json("/api/v1/stocks/AAPL/bars?interval=1m&from=1727827200&to=1727913600&limit=5001");
is($rl->{status}, 400, 'limit above the maximum: 400');
is($dl->{message}, 'limit must be an integer from 1 to 5000', 'with the reason');
my (undef, $dd) = get_json("/api/v1/stocks/AAPL/bars?interval=1m&from=1727827200&to=1727913600");
is(scalar @{ $dd->{bars} }, 389, 'without limit: up to the default page (500)');

$s->stop_worker;
done_testing();
