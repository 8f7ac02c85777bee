# insite-stocks behind nginx as nginx.conf.example puts it: the gateway
# (JWT, per-user Redis limit, breaker) in front, proxy_cache (with
# proxy_cache_lock) for quotes and bars, watchlists never cached.
#   - the second identical bars/quote request is served by nginx's cache
#     (the worker's own request counters do not move);
#   - X-User-Id comes from the token, whatever the client sends: user A
#     cannot read or change user B's watchlists;
#   - the breaker opens when the worker is stopped and closes when it is back.
use strict;
use warnings;
use lib 't/lib';

use Digest::SHA qw(hmac_sha256);
use JSON::PP ();
use MIME::Base64 qw(encode_base64url);
use Test::More;
use Time::HiRes qw(sleep time);

use Insite::Nginx;
use Insite::Services qw(http_request);
use Insite::Stocks;

for my $v (qw(INSITE_REDIS_PORT INSITE_PG_DSN INSITE_KAFKA_BOOTSTRAP)) {
    plan skip_all => "$v not set (run under scripts/test.sh)" unless $ENV{$v};
}
my $shared = '../shared/fixtures/yahoo';
plan skip_all => "$shared missing" unless -d $shared;
plan skip_all => 'build/bin/insite-stocks not built' unless -x 'build/bin/insite-stocks';

my $json = JSON::PP->new->canonical;
my $s = Insite::Stocks->new(tag => "st502_$$");
my $aapl = do { local (@ARGV, $/) = ("$shared/chart_AAPL_1m_2024-10-02.json"); <> };
$s->feed({ AAPL => $aapl }, { AAPL => 389 });
my $wport = $s->start_worker;
my $cache = $s->tmp . '/cache';
my $rport = $ENV{INSITE_REDIS_PORT};

my $common = <<"LOC";
            insite_gateway_service     stocks;
            insite_gateway_jwt         on;
            insite_gateway_breaker     failures=3 window=10s recovery=1s half_open=1;
            insite_gateway_rate_limit  zone=api key=\$insite_user_id rate=6000r/m burst=5999
                                       backend=redis fail=open;
            proxy_http_version         1.1;
            proxy_set_header           Connection "";
            proxy_set_header           X-User-Id \$insite_user_id;
LOC
my $ngx = Insite::Nginx->new(
    http => <<"HTTP",
    insite_redis 127.0.0.1:$rport connect_timeout=1s command_timeout=500ms;
    insite_gateway_jwt_secret "test-secret";
    proxy_cache_path $cache levels=1:2 keys_zone=insite_stocks:1m max_size=16m inactive=10m use_temp_path=off;
    upstream insite_stocks_api { server 127.0.0.1:$wport; keepalive 8; }
HTTP
    server => <<"SERVER",
        location /api/v1/stocks {
$common
            proxy_cache                insite_stocks;
            proxy_cache_key            \$uri\$is_args\$args;
            proxy_cache_lock           on;
            proxy_cache_lock_timeout   5s;
            proxy_cache_revalidate     on;
            add_header                 X-Cache-Status \$upstream_cache_status always;
            proxy_pass                 http://insite_stocks_api;
        }
        location /api/v1/watchlists {
$common
            add_header                 X-Cache-Status \$upstream_cache_status always;
            proxy_pass                 http://insite_stocks_api;
        }
SERVER
);

sub jwt {
    my ($sub) = @_;
    my $input = encode_base64url('{"alg":"HS256","typ":"JWT"}') . '.'
              . encode_base64url(sprintf '{"sub":"%s","exp":%d}', $sub, time + 3600);
    return "$input." . encode_base64url(hmac_sha256($input, 'test-secret'));
}
my %tok = (a => jwt('user-a'), b => jwt('user-b'));
sub req {
    my ($method, $path, $who, %o) = @_;
    my %h = (%{ $o{headers} // {} }, ($who ? (Authorization => "Bearer $tok{$who}") : ()));
    my $r = http_request($ngx->port, $method, $path, headers => \%h,
                         (defined $o{body} ? (body => $o{body}) : ()), timeout => 20);
    $r->{json} = eval { $json->decode($r->{body}) };
    return $r;
}

# ---- JWT in front
my $r = req(GET => '/api/v1/stocks/AAPL', undef);
is($r->{status}, 401, 'no token: 401 from the gateway');
is($s->counter('quote_requests'), 0, 'the worker never saw it');

# ---- proxy_cache: the second request does not reach the worker
my $bars = '/api/v1/stocks/AAPL/bars?interval=5m&from=1727827200&to=1727913600';
my $b0 = $s->counter('bars_requests');
my $r1 = req(GET => $bars, 'a');
is($r1->{status}, 200, 'bars through the gateway');
is($r1->{headers}{'x-cache-status'}, 'MISS', 'first: MISS');
my $r2 = req(GET => $bars, 'b');
is($r2->{status}, 200, 'again, as another user');
is($r2->{headers}{'x-cache-status'}, 'HIT', 'second: HIT');
is($r2->{body}, $r1->{body}, 'the same bytes');
is($s->counter('bars_requests'), $b0 + 1, 'the worker answered once');
my $r3 = req(GET => $bars, 'a', headers => { 'If-None-Match' => $r1->{headers}{etag} });
is($r3->{status}, 304, 'If-None-Match through the cache: 304');
is($s->counter('bars_requests'), $b0 + 1, 'still once');
my $q0 = $s->counter('quote_requests');
my @q = map { req(GET => '/api/v1/stocks/AAPL', 'a') } 1 .. 2;
is_deeply([ map { $_->{status} } @q ], [200, 200], 'quotes');
is($q[1]{headers}{'x-cache-status'}, 'HIT', 'the quote is cached too (max-age=2)');
is($s->counter('quote_requests'), $q0 + 1, 'one quote request reached the worker');
$r = req(GET => "/api/v1/stocks/NOPE", "a");
is($r->{status}, 404, 'unknown symbol through the gateway: 404');
is($r->{json}{error}, 'not_found', 'the worker error shape');

# ---- watchlists: identity from the token, never cached
$r = req(PUT => '/api/v1/watchlists', 'a', body => '{"watchlists":[{"name":"A","symbols":["AAPL"]}]}');
is($r->{status}, 200, 'A saves a list');
$r = req(PUT => '/api/v1/watchlists', 'b', headers => { 'X-User-Id' => 'user-a' },
         body => '{"watchlists":[{"name":"B","symbols":["TSLA"]}]}');
is($r->{status}, 200, 'B saves a list, claiming to be A in X-User-Id');
my $w0 = $s->counter('watchlist_requests');
$r = req(GET => '/api/v1/watchlists', 'a');
is_deeply([ map { $_->{name} } @{ $r->{json}{watchlists} } ], ['A'], "A sees A's list only: B's forged header was overwritten");
$r = req(GET => '/api/v1/watchlists', 'a');
is($r->{headers}{'x-cache-status'} // '', '', 'watchlists do not go through the cache');
is($s->counter('watchlist_requests'), $w0 + 2, 'both GETs reached the worker');
$r = req(GET => '/api/v1/watchlists', 'b', headers => { 'X-User-Id' => 'user-a' });
is_deeply([ map { $_->{name} } @{ $r->{json}{watchlists} } ], ['B'], "B sees B's list only");
is($s->psql("SELECT string_agg(user_id || ':' || name, ',' ORDER BY user_id) FROM watchlists"),
   'user-a:A,user-b:B', 'rows in PostgreSQL: one per user');

# ---- the breaker: worker stopped -> open; back -> closed
$s->stop_worker;
my @seen;
for (1 .. 6) {
    push @seen, req(GET => '/api/v1/watchlists', 'a')->{status};
    sleep 0.05;
}
is_deeply(\@seen, [502, 502, 502, 503, 503, 503], 'worker stopped: 3 failures, then the breaker answers 503')
    or diag "@seen";
$r = req(GET => '/api/v1/watchlists', 'a');
like($r->{body}, qr/"error":"service_unavailable"/, 'open: the gateway error shape');
$s->start_worker;
my $deadline = time + 20;
my $st = 0;
while (time < $deadline) {
    $st = req(GET => '/api/v1/watchlists', 'a')->{status};
    last if $st == 200;
    sleep 0.3;
}
is($st, 200, 'worker back: the half-open probe succeeds');
is(req(GET => '/api/v1/watchlists', 'a')->{status}, 200, 'closed again');

$ngx->stop;
$s->stop_worker;
done_testing();
