# ngx_http_insite_gateway_module's Redis rate limit on a real Redis Cluster
# (3 masters): t/303's exactness checks with two nginx (2 workers each) on
# the cluster, for keys on every master; then the master holding one key is
# frozen (SIGSTOP) past command_timeout: for that key fail=open admits and
# fail=closed answers 503, while keys on the other shards are still limited
# exactly.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use IO::Socket::INET;
use Insite::RedisCluster;
use Insite::Nginx;

my $cl = Insite::RedisCluster->new(masters => 3, replicas => 0);

my $limit = 'rate=1r/m burst=9 backend=redis';
my %conf = (
    http => "    insite_redis_cluster " . $cl->seeds . " connect_timeout=300ms command_timeout=200ms;",
    server => <<"SERVER",
        location = /open { insite_gateway_rate_limit zone=shared key=\$http_x_key $limit fail=open; empty_gif; }
        location = /closed { insite_gateway_rate_limit zone=shared key=\$http_x_key $limit fail=closed; empty_gif; }
        location = /crowd {
            insite_gateway_rate_limit zone=crowd key=\$http_x_key rate=1r/m burst=49 backend=redis;
            empty_gif;
        }
        location = /healthz { insite_healthz; }
SERVER
);
my $a = Insite::Nginx->new(%conf);
my $b = Insite::Nginx->new(%conf);

sub connected {
    my ($n) = @_;
    my $end = Time::HiRes::time() + 20;
    my $streak = 0;
    while (Time::HiRes::time() < $end) {
        $streak = ($n->get('/healthz')->{body} // '') =~ /"state":"connected"/ ? $streak + 1 : 0;
        return 1 if $streak >= 10;
        Time::HiRes::sleep(0.02);
    }
    return 0;
}
ok(connected($a) && connected($b), 'both servers connected to the cluster');

# a key of zone "shared" whose Redis key lives on each master
my $ranges = $cl->slot_ranges;
my %key_on;
for my $i (1 .. 10000) {
    my $k = "k$$.$i";
    my $m = $cl->master_of_slot($cl->slot_of("insite:rl:shared:$k"), undef, $ranges);
    $key_on{ $m->port } //= $k;
    last if keys %key_on == 3;
}
is(scalar keys %key_on, 3, 'a key on each of the 3 masters');

# 1. one limit over two servers, for a key on each master: 10 of 12
for my $port (sort keys %key_on) {
    my @st = map { ($_ % 2 ? $a : $b)->get('/open', headers => ['X-Key' => $key_on{$port}])->{status} } 1 .. 12;
    is_deeply(\@st, [(200) x 10, 429, 429], "key on :$port: burst+1 = 10 admitted across two nginx servers")
        or diag "@st";
    is($cl->node_by_port($port)->cli('EXISTS', "insite:rl:shared:$key_on{$port}"), 1,
       "key on :$port: its state is on that master");
}

# 2. 200 concurrent clients over both servers (4 workers): exactly 50
my @socks = map {
    IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => ($_ % 2 ? $a : $b)->port,
                          Proto => 'tcp', Timeout => 5) or die $!
} 1 .. 200;
syswrite $_, "GET /crowd HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Key: c$$\r\n\r\n" for @socks;
my %codes;
{
    local $SIG{ALRM} = sub { die "no answer in time\n" };
    alarm 30;
    for my $s (@socks) {
        local $/;
        my ($code) = (<$s> // '') =~ m{^HTTP/1\.1 (\d{3})};
        $codes{ $code // 'none' }++;
    }
    alarm 0;
}
is_deeply(\%codes, { 200 => 50, 429 => 150 }, '200 concurrent clients on two servers: exactly 50 admitted')
    or diag explain \%codes;

# 3. the shard of one key frozen past command_timeout (no replica takes over)
my ($frozen_port, $other_port) = (sort keys %key_on)[0, 1];
my $victim = $cl->node_by_port($frozen_port);
$victim->freeze;
my (%open, %closed);
for my $i (1 .. 4) {
    my $n = $i % 2 ? $a : $b;
    my $r = $n->get('/open', headers => ['X-Key' => $key_on{$frozen_port}], timeout => 10);
    $open{ $r->{status} // 'none' }++;
    $r = $n->get('/closed', headers => ['X-Key' => $key_on{$frozen_port}], timeout => 10);
    $closed{ $r->{status} // 'none' }++;
    like($r->{body}, qr/"error":"service_unavailable","message":"the rate limiter is unavailable"/,
         'fail=closed: the one error shape') if $i == 1;
}
# the key on a live shard: still decided by Redis (its 10 were used above)
my $other = $a->get('/closed', headers => ['X-Key' => $key_on{$other_port}], timeout => 10);
$victim->thaw;
is_deeply(\%open, { 200 => 4 }, 'its shard frozen, fail=open: admitted (over its limit, undecided)')
    or diag explain \%open;
is_deeply(\%closed, { 503 => 4 }, 'its shard frozen, fail=closed: 503') or diag explain \%closed;
is($other->{status}, 429, 'a key on a live shard is still limited (429 at its limit, not 503)');
ok($cl->wait_ok(30), 'the cluster is ok after the thaw');
ok(connected($a) && connected($b), 'both servers connected again');
my $st = $b->get('/closed', headers => ['X-Key' => $key_on{$frozen_port}], timeout => 10)->{status};
is($st, 429, 'the thawed shard decides again: the key is at its limit');

$a->stop;
$b->stop;
like($a->error_log . $b->error_log, qr/rate limit zone "shared" cannot decide \(timeout\), failing closed/,
     'the frozen shard: the timeout logged with the decision');
$a->check_log('no alerts on server A');
$b->check_log('no alerts on server B');
done_testing;
