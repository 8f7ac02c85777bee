# ngx_http_insite_gateway_module: the local (shared memory) rate limit.
# GCRA with limit_req nodelay semantics: exact decisions and headers at the
# boundary, across both workers, atomic under 200 concurrent clients.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use IO::Socket::INET;
use Time::HiRes qw(time sleep);
use Digest::SHA qw(hmac_sha256);
use MIME::Base64 qw(encode_base64url);
use Insite::Nginx;

sub jwt {
    my ($claims) = @_;
    my $input = encode_base64url('{"alg":"HS256","typ":"JWT"}') . '.'
              . encode_base64url($claims);
    return "$input." . encode_base64url(hmac_sha256($input, 'k'));
}

# `insite_healthz` is a content handler: the access phase runs before it
# (`return` would answer in the rewrite phase, before any access check)
my $ngx = Insite::Nginx->new(
    http => <<'HTTP',
    insite_gateway_rate_zone rl 1m;
    insite_gateway_rate_zone tiny 32k;
HTTP
    server => <<'SERVER',
        location = /exact {
            insite_gateway_rate_limit zone=rl key=exact$http_x_key rate=10r/m burst=9;
            insite_healthz;
        }
        location = /draft {
            insite_gateway_rate_limit zone=rl key=draft$http_x_key rate=100r/m burst=20;
            insite_gateway_rate_headers draft;
            insite_healthz;
        }
        location = /legacy {
            insite_gateway_rate_limit zone=rl key=legacy$http_x_key rate=2r/s burst=0;
            insite_gateway_rate_headers legacy;
            insite_healthz;
        }
        location = /noheaders {
            insite_gateway_rate_limit zone=rl key=noh$http_x_key rate=1r/s burst=0;
            insite_gateway_rate_headers off;
            insite_healthz;
        }
        location = /second {
            insite_gateway_rate_limit zone=rl key=sec$http_x_key rate=1r/s burst=1;
            insite_healthz;
        }
        location = /crowd {
            insite_gateway_rate_limit zone=rl key=crowd$http_x_key rate=1r/m burst=49;
            insite_healthz;
        }
        location = /nokey {
            insite_gateway_rate_limit zone=rl key=$http_x_key rate=1r/m burst=0;
            insite_healthz;
        }
        location = /user {
            insite_gateway_jwt on;
            insite_gateway_jwt_secret k;
            insite_gateway_rate_limit zone=rl key=$insite_user_id rate=1r/m burst=1;
            insite_healthz;
        }
        location = /tiny {
            insite_gateway_rate_limit zone=tiny key=$http_x_key rate=1r/m burst=0;
            insite_healthz;
        }
        location = /metrics { insite_metrics; }
SERVER
);

sub get { my ($path, %h) = @_; return $ngx->get($path, headers => [%h]) }

# 1. rate=10r/m burst=9: 10 at once, then one per 6 s; every header exact
my $k = "k$$";
for my $i (1 .. 10) {
    my $r = get('/exact', 'X-Key' => $k);
    is($r->{status}, 200, "request $i of the burst admitted");
    is($r->{headers}{'ratelimit-policy'}, '"rl";q=10;w=60', "policy header ($i)");
    is($r->{headers}{'ratelimit-remaining'}, 10 - $i, "remaining counts down ($i)");
    is($r->{headers}{'ratelimit-limit'}, 10, "legacy limit ($i)");
    # drained after i * 6 s (the key's theoretical arrival time)
    is($r->{headers}{'ratelimit-reset'}, 6 * $i, "reset is i * 6 s ($i)");
    is($r->{headers}{ratelimit}, sprintf('"rl";r=%d;t=%d', 10 - $i, 6 * $i),
       "draft RateLimit header ($i)");
}
my $r = get('/exact', 'X-Key' => $k);
is($r->{status}, 429, 'the 11th is refused');
is($r->{headers}{'retry-after'}, 6, 'Retry-After: 6 (one emission interval)');
is($r->{headers}{'ratelimit-remaining'}, 0, 'remaining 0 on the refusal');
is($r->{headers}{ratelimit}, '"rl";r=0;t=60', 'draft header on the refusal');
is($r->{headers}{'content-type'}, 'application/json', 'JSON refusal');
like($r->{body}, qr/^\{"error":"rate_limited","message":"rate limit exceeded, retry in 6 s","request_id":"[0-9a-f]{32}","retry_after":6\}\n$/,
     'the one error shape, with retry_after');
like($r->{headers}{'x-request-id'} // '', qr/^[0-9a-f]{32}$/, 'X-Request-ID on the refusal');
is(get('/exact', 'X-Key' => "other$k")->{status}, 200, 'another key has its own budget');

# 2. the boundary in time: rate=1r/s burst=1
$k = "t$$";
is(get('/second', 'X-Key' => $k)->{status}, 200, '1r/s burst=1: first');
is(get('/second', 'X-Key' => $k)->{status}, 200, 'second (the burst)');
$r = get('/second', 'X-Key' => $k);
is($r->{status}, 429, 'third refused at once');
is($r->{headers}{'retry-after'}, 1, 'Retry-After 1');
sleep 1.15;
is(get('/second', 'X-Key' => $k)->{status}, 200, 'one more after 1/rate');
is(get('/second', 'X-Key' => $k)->{status}, 429, 'and only one');

# 3. header modes
$r = get('/draft', 'X-Key' => $k);
is($r->{headers}{'ratelimit-policy'}, '"rl";q=21;w=13', 'draft: q=burst+1, w=(burst+1)/rate rounded up');
is($r->{headers}{ratelimit}, '"rl";r=20;t=1', 'draft: RateLimit');
ok(!exists $r->{headers}{'ratelimit-limit'}, 'draft only: no legacy headers');
$r = get('/legacy', 'X-Key' => $k);
is($r->{headers}{'ratelimit-limit'}, 1, 'legacy: limit');
is($r->{headers}{'ratelimit-remaining'}, 0, 'legacy: remaining');
is($r->{headers}{'ratelimit-reset'}, 1, 'legacy: reset');
ok(!exists $r->{headers}{ratelimit}, 'legacy only: no draft headers');
$r = get('/legacy', 'X-Key' => $k);
is($r->{status}, 429, '2r/s burst=0: the second at once is refused');
is($r->{headers}{'retry-after'}, 1, 'Retry-After is at least 1 s');
$r = get('/noheaders', 'X-Key' => $k);
ok(!grep({ /^ratelimit/ } keys %{ $r->{headers} }), 'off: no rate-limit headers');
is(get('/noheaders', 'X-Key' => $k)->{status}, 429, 'off still limits');

# 4. an empty key is not limited
is(get('/nokey')->{status}, 200, 'no key: admitted') for 1 .. 3;

# 5. keyed on the JWT subject
my ($ta, $tb) = (jwt('{"sub":"alice"}'), jwt('{"sub":"bob"}'));
is(get('/user', Authorization => "Bearer $ta")->{status}, 200, 'alice 1') for 1 .. 2;
is(get('/user', Authorization => "Bearer $ta")->{status}, 429, 'alice 3 refused');
is(get('/user', Authorization => "Bearer $tb")->{status}, 200, 'bob has his own budget');
is(get('/user')->{status}, 401, 'no token: 401 before the limit is consulted');

# 6. 200 concurrent clients, one key, both workers: never more than burst+1
sub crowd {
    my ($n, $path, $hdr) = @_;
    my @socks;
    for (1 .. $n) {
        push @socks, IO::Socket::INET->new(PeerAddr => '127.0.0.1',
            PeerPort => $ngx->port, Proto => 'tcp', Timeout => 5) or die "connect: $!";
    }
    my $req = "GET $path HTTP/1.1\r\nHost: x\r\nConnection: close\r\n$hdr\r\n";
    syswrite $_, $req for @socks;
    my %codes;
    local $SIG{ALRM} = sub { die "crowd: no answer in time\n" };
    alarm 20;
    for my $s (@socks) {
        local $/;
        my $res = <$s> // '';
        my ($code) = $res =~ m{^HTTP/1\.1 (\d{3})};
        $codes{$code // 'none'}++;
    }
    alarm 0;
    return \%codes;
}
my $t0 = time;
my $codes = crowd(200, '/crowd', "X-Key: c$$\r\n");
is($codes->{200}, 50, '200 concurrent clients: exactly burst+1 = 50 admitted')
    or diag explain $codes;
is($codes->{429}, 150, 'the other 150 refused') or diag explain $codes;
cmp_ok(time - $t0, '<', 15, 'no hang');

# 7. a tiny zone with many keys: LRU eviction, no error
my %tiny;
for my $i (1 .. 600) {
    $tiny{ get('/tiny', 'X-Key' => "key-$i-" . ('x' x 40))->{status} }++;
}
is($tiny{200}, 600, 'every new key admitted, old ones evicted') or diag explain \%tiny;

# 8. metrics
my $m = get('/metrics')->{body};
like($m, qr/^insite_gateway_rate_limit_total\{zone="rl",result="allowed"\} \d+$/m, 'allowed counted');
my ($refused) = $m =~ /^insite_gateway_rate_limit_total\{zone="rl",result="refused"\} (\d+)$/m;
cmp_ok($refused // 0, '>=', 150, 'refusals counted over both workers');

$ngx->stop;
$ngx->check_log;
unlike($ngx->error_log, qr/cannot decide/, 'the local zone always decided');

done_testing;
