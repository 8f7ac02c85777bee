# ngx_http_insite_gateway_module: a full local rate-limit zone does not
# switch the limit off.  A flood of distinct keys (of every length, so of
# every slab size class) fills a 32k zone; the least recently used keys are
# evicted to make room, a hot key stays limited throughout, the evictions
# are counted in insite_metrics and logged once per interval, not per
# request.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Insite::Nginx;

my $ngx = Insite::Nginx->new(
    http => "    insite_gateway_rate_zone tiny 32k;\n",
    server => <<'SERVER',
        location = /tiny {
            insite_gateway_rate_limit zone=tiny key=$http_x_key rate=1r/m burst=2;
            insite_healthz;
        }
        location = /metrics { insite_metrics; }
SERVER
);

sub get { my ($path, %h) = @_; return $ngx->get($path, headers => [%h]) }

# a hot key (long: a size class of its own) against a flood of other keys
my $hot = 'hot-' . ('h' x 300);
my (%hot, %flood);
my $n = 0;
for my $round (1 .. 12) {
    $hot{ get('/tiny', 'X-Key' => $hot)->{status} }++;
    for (1 .. 60) {
        $n++;
        # lengths 1..600 bytes: every slab class from 128 to 1024 bytes
        my $key = "f$n-" . ('x' x (($n * 37) % 600));
        $flood{ get('/tiny', 'X-Key' => $key)->{status} }++;
    }
}

is($hot{200}, 3, 'the hot key: burst + 1 admitted') or diag explain \%hot;
is($hot{429}, 9, 'the hot key: every later request refused, zone full or not')
    or diag explain \%hot;
is($flood{200}, 720, 'every new key admitted (room made by eviction)')
    or diag explain \%flood;

# the flooded keys are limited as well while they are in the zone
my $k = 'again-' . $$;
my @s = map { get('/tiny', 'X-Key' => $k)->{status} } 1 .. 4;
is("@s", '200 200 200 429', 'a fresh key is limited in a full zone');

my $m = get('/metrics')->{body};
my ($evicted) = $m =~ /^insite_gateway_rate_limit_evictions_total\{zone="tiny"\} (\d+)$/m;
cmp_ok($evicted // 0, '>=', 300, 'evictions counted in insite_metrics')
    or diag $m;

$ngx->stop;
$ngx->check_log;
my $log = $ngx->error_log;
my $full = () = $log =~ /rate limit zone "tiny" is full/g;
cmp_ok($full, '>=', 1, 'the full zone is logged');
cmp_ok($full, '<=', 2, 'once per interval per worker, not per request')
    or diag $full;
unlike($log, qr/cannot decide|failing open/, 'never failing open');

done_testing;
