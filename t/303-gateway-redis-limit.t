# ngx_http_insite_gateway_module: the Redis-backed rate limit.  Two nginx
# servers (2 workers each) share one limit; Redis killed and frozen under
# fail=open and fail=closed: decided at once, never a hang.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use IO::Socket::INET;
use Time::HiRes qw(time sleep);
use Insite::Services qw(start_redis);
use Insite::Nginx;

my $redis = start_redis();
my $port = $redis->port;

my %conf = (
    http => "    insite_redis 127.0.0.1:$port connect_timeout=300ms command_timeout=200ms;",
    server => <<'SERVER',
        location = /open {
            insite_gateway_rate_limit zone=shared key=$http_x_key rate=1r/m burst=9 backend=redis fail=open;
            empty_gif;   # admitted: 200 (healthz would say 503 while Redis is down)
        }
        location = /closed {
            insite_gateway_rate_limit zone=shared key=$http_x_key rate=1r/m burst=9 backend=redis fail=closed;
            empty_gif;   # admitted: 200 (healthz would say 503 while Redis is down)
        }
        location = /crowd {
            insite_gateway_rate_limit zone=crowd key=$http_x_key rate=1r/m burst=49 backend=redis;
            empty_gif;   # admitted: 200 (healthz would say 503 while Redis is down)
        }
        location = /fast {
            insite_gateway_rate_limit zone=fast key=$http_x_key rate=1r/s burst=0 backend=redis;
            empty_gif;   # admitted: 200 (healthz would say 503 while Redis is down)
        }
        location = /healthz { insite_healthz; }
        location = /metrics { insite_metrics; }
SERVER
);
my $a = Insite::Nginx->new(%conf);
my $b = Insite::Nginx->new(%conf);

sub connected {
    my ($n) = @_;
    my $end = time + 8;
    my $streak = 0;
    while (time < $end) {
        $streak = ($n->get('/healthz')->{body} // '') =~ /"state":"connected"/ ? $streak + 1 : 0;
        return 1 if $streak >= 10;
        sleep 0.02;
    }
    return 0;
}
ok(connected($a) && connected($b), 'both servers connected to Redis');

# 1. one limit over two servers: 10 admitted in all, alternating
my $k = "shared$$";
my @st;
for my $i (1 .. 12) {
    my $n = $i % 2 ? $a : $b;
    my $r = $n->get('/open', headers => ['X-Key' => $k]);
    push @st, $r->{status};
    if ($i == 10) {
        is($r->{headers}{'ratelimit-remaining'}, 0, 'remaining 0 on the 10th, on the other server');
        is($r->{headers}{ratelimit}, '"shared";r=0;t=600', 'draft header from the Redis decision');
    }
    if ($i == 11) {
        is($r->{headers}{'retry-after'}, 60, 'Retry-After: 1r/m is one per 60 s');
        like($r->{body}, qr/"error":"rate_limited".*"retry_after":60\}/, 'JSON refusal');
    }
}
is_deeply(\@st, [(200) x 10, 429, 429], 'burst+1 = 10 admitted across two nginx servers')
    or diag "@st";

# 2. 200 concurrent clients over both servers (4 workers): exactly 50
my @socks;
for my $i (1 .. 200) {
    push @socks, IO::Socket::INET->new(PeerAddr => '127.0.0.1',
        PeerPort => ($i % 2 ? $a : $b)->port, Proto => 'tcp', Timeout => 5) or die $!;
}
syswrite $_, "GET /crowd HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Key: c$$\r\n\r\n" for @socks;
my %codes;
{
    local $SIG{ALRM} = sub { die "no answer in time\n" };
    alarm 20;
    for my $s (@socks) {
        local $/;
        my ($code) = (<$s> // '') =~ m{^HTTP/1\.1 (\d{3})};
        $codes{$code // 'none'}++;
    }
    alarm 0;
}
is($codes{200}, 50, '200 concurrent clients on two servers: exactly 50 admitted')
    or diag explain \%codes;
is($codes{429}, 150, '150 refused') or diag explain \%codes;

# 3. the boundary in Redis time
is($a->get('/fast', headers => ['X-Key' => $k])->{status}, 200, '1r/s: first');
is($b->get('/fast', headers => ['X-Key' => $k])->{status}, 429, '1r/s: second at once refused');
sleep 1.1;
is($b->get('/fast', headers => ['X-Key' => $k])->{status}, 200, 'one more a second later');

# 4. Redis killed: fail=open admits, fail=closed answers 503, at once
$redis->kill9;
sleep 0.2;
my ($slowest, %open, %closed) = (0);
for my $i (1 .. 20) {
    my $n = $i % 2 ? $a : $b;
    my $r = $n->get('/open', headers => ['X-Key' => "dead$i"], timeout => 5);
    $open{ $r->{status} // 'none' }++;
    $slowest = $r->{elapsed} if $r->{elapsed} > $slowest;
    ok(!exists $r->{headers}{ratelimit}, 'no rate-limit headers without a decision') if $i == 1;
    $r = $n->get('/closed', headers => ['X-Key' => "dead$i"], timeout => 5);
    $closed{ $r->{status} // 'none' }++;
    $slowest = $r->{elapsed} if $r->{elapsed} > $slowest;
    if ($i == 1) {
        like($r->{body}, qr/^\{"error":"service_unavailable","message":"the rate limiter is unavailable","request_id":"[0-9a-f]{32}","retry_after":1\}$/,
             'fail=closed: the one error shape');
        is($r->{headers}{'retry-after'}, 1, 'fail=closed: Retry-After 1');
    }
}
is_deeply(\%open, { 200 => 20 }, 'Redis dead, fail=open: admitted') or diag explain \%open;
is_deeply(\%closed, { 503 => 20 }, 'Redis dead, fail=closed: 503') or diag explain \%closed;
cmp_ok($slowest, '<', 1.5, 'no request waited on the dead Redis');

# 5. Redis back, then frozen: commands time out (200ms), fail= decides
$redis->restart;
ok(connected($a) && connected($b), 'both servers reconnect');
is($a->get('/open', headers => ['X-Key' => "back$$"])->{status}, 200, 'limiting again');
$redis->freeze;
($slowest, %open, %closed) = (0);
for my $i (1 .. 4) {
    my $r = $a->get('/open', headers => ['X-Key' => "frozen$i"], timeout => 5);
    $open{ $r->{status} // 'none' }++;
    $slowest = $r->{elapsed} if $r->{elapsed} > $slowest;
    $r = $b->get('/closed', headers => ['X-Key' => "frozen$i"], timeout => 5);
    $closed{ $r->{status} // 'none' }++;
    $slowest = $r->{elapsed} if $r->{elapsed} > $slowest;
}
$redis->thaw;
is_deeply(\%open, { 200 => 4 }, 'Redis frozen, fail=open: admitted') or diag explain \%open;
is_deeply(\%closed, { 503 => 4 }, 'Redis frozen, fail=closed: 503') or diag explain \%closed;
cmp_ok($slowest, '<', 1.5, 'a frozen Redis stalls no request beyond the command timeout');
ok(connected($a) && connected($b), 'both servers recover after the freeze');

my $m = $a->get('/metrics')->{body};
my ($errors) = $m =~ /^insite_gateway_rate_limit_total\{zone="shared",result="error"\} (\d+)$/m;
cmp_ok($errors // 0, '>=', 10, 'backend errors counted');

$a->stop;
$b->stop;
my $log = $a->error_log . $b->error_log;
like($log, qr/\[warn\].*rate limit zone "shared" cannot decide \(Redis not connected\), failing open, request_id: [0-9a-f]{32}/,
     'Redis down: logged with the decision');
like($log, qr/rate limit zone "shared" cannot decide \(timeout\), failing closed/,
     'Redis frozen: the timeout logged');
$a->check_log('no alerts on server A');
$b->check_log('no alerts on server B');

done_testing;
