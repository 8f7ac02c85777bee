# ngx_http_insite_ws_module: what an anonymous subscriber can make Redis keep
# (issue 11, finding 2).  A subscribe to a channel never published writes
# nothing (lua/position.lua is read only): one connection naming 10,000
# channels leaves DBSIZE as it was.  The first publish to such a channel
# reaches its subscriber without a reset.  insite_ws_channels refuses names
# outside its patterns (unknown_channel, also for publishing) and
# insite_ws_subscribe_rate refuses a subscribe burst (rate_limited) while
# the connection stays.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Insite::Services qw(start_redis);
use Insite::Nginx;
use Insite::WS;

my $redis = start_redis();
my $rport = $redis->port;

my $ngx = Insite::Nginx->new(
    http   => "    insite_redis 127.0.0.1:$rport;\n"
            . "    insite_ws_shutdown_spread 100ms;",
    server => "        location /ws { insite_ws; insite_ws_subscribe_rate 100000r/s burst=100000; }\n"
            . "        location /ws-known {\n"
            . "            insite_ws;\n"
            . "            insite_ws_channels stock_updates:* sentiment_updates:* alert:*;\n"
            . "        }\n"
            . "        location /ws-slow { insite_ws; insite_ws_subscribe_rate 1r/s burst=5; }\n"
            . "        location /pub { insite_ws_publish; }\n"
            . "        location /pub-known { insite_ws_publish; insite_ws_channels stock_updates:*; }\n"
            . "        location /status { insite_ws_status; }",
);
my $port = $ngx->port;
ok(Insite::WS->wait_ready($port), 'Redis connected in both workers');

END {
    diag "error log:\n" . Insite::WS->log_tail($ngx, 60)
        if $ngx && $ngx->pid && !Test::More->builder->is_passing;
}

sub client {
    my ($path) = @_;
    my $ws = Insite::WS->connect($port, path => $path // '/ws');
    die "handshake: " . $ws->status . "\n" unless $ws->status == 101;
    return $ws;
}

# --- 10,000 never-published names leave nothing behind ---------------------
my $before = $redis->cli('DBSIZE');
my $ws = client();
my ($subscribed, $unsubscribed) = (0, 0);
for my $batch (0 .. 99) {
    my @names = map { "never:$batch:$_" } 0 .. 99;
    my $m = $ws->subscribe(\@names, id => "s$batch", timeout => 10);
    $subscribed += scalar keys %{ $m->{channels} // {} } if ($m->{type} // '') eq 'subscribed';
    $ws->send_json({ op => 'unsubscribe', channels => \@names, id => "u$batch" });
    my $u = $ws->recv_json(timeout => 10);
    $unsubscribed += scalar @{ $u->{channels} // [] } if ($u->{type} // '') eq 'unsubscribed';
}
is($subscribed, 10_000, 'one anonymous connection subscribed 10,000 never-published channels');
is($unsubscribed, 10_000, '... and unsubscribed them');
is($redis->cli('DBSIZE'), $before, "Redis DBSIZE unchanged ($before): no state for channels without messages");
is($redis->cli('KEYS', 'insite:{never:*'), '', 'no key of those channels');

# --- a never-published channel's first message: delivered, no reset ---------
my $m = $ws->subscribe(['fresh:one'], id => 'f');
is($m->{type}, 'subscribed', 'subscribed to a channel never published');
is($m->{channels}{'fresh:one'}{seq}, 0, '... at seq 0');
is($m->{channels}{'fresh:one'}{epoch}, '', '... of the empty epoch (nothing in Redis yet)');
my $res = Insite::WS->publish($port, 'fresh:one', { type => 'tick', data => { n => 1 } });
is($res->{status}, 201, 'the first publish');
my $msg = $ws->recv_json(timeout => 5);
is($msg && $msg->{type}, 'tick', 'the subscriber gets the first message, not a reset');
is($msg && $msg->{seq}, 1, '... with seq 1');
# a resume from "seq 0 of no epoch" replays it, without a reset
my $ws2 = client();
$m = $ws2->subscribe(['fresh:one'], since => { 'fresh:one' => { seq => 0, epoch => '' } });
is($m->{channels}{'fresh:one'}{epoch}, $res->{json}{epoch}, 'a later subscribe sees the epoch the publish made');
$msg = $ws2->recv_json(timeout => 5);
is($msg && $msg->{type}, 'tick', 'a resume from seq 0 replays message 1 without a reset');
$ws2->close;

# --- insite_ws_channels ------------------------------------------------------
my $k = client('/ws-known');
$m = $k->subscribe(['stock_updates:AAPL', 'alert:u1'], id => 'k1');
is($m->{type}, 'subscribed', 'channels matching insite_ws_channels are served');
$m = $k->subscribe(['stock_updates:MSFT', 'random:x'], id => 'k2');
is($m->{type}, 'error', 'a channel matching no pattern: an error frame');
is($m->{code}, 'unknown_channel', '... code unknown_channel');
is($m->{id}, 'k2', '... id echoed');
$k->send_json({ op => 'ping', id => 'p' });
is_deeply($k->recv_json(timeout => 3), { type => 'pong', id => 'p' }, '... and the connection stays');
$k->close;

$res = Insite::WS->publish($port, 'random:x', { data => 1 }, path => '/pub-known');
is($res->{status}, 400, 'publishing to an unknown channel: 400');
is($res->{json} && $res->{json}{error}, 'unknown_channel', '... error unknown_channel');
$res = Insite::WS->publish($port, 'stock_updates:IBM', { data => 1 }, path => '/pub-known');
is($res->{status}, 201, 'publishing to a known channel: 201');

# --- insite_ws_subscribe_rate ------------------------------------------------
my $s = client('/ws-slow');
$m = $s->subscribe([map { "slow:$_" } 1 .. 5], id => 'r1');
is($m->{type}, 'subscribed', 'a burst of 5 channels (burst=5) is served');
$m = $s->subscribe([map { "slow:$_" } 6 .. 8], id => 'r2');
is($m->{type}, 'error', 'the next 3 right after: refused');
is($m->{code}, 'rate_limited', '... code rate_limited');
is($m->{id}, 'r2', '... id echoed');
$m = $s->subscribe([map { "slow:$_" } 1 .. 10], id => 'r3');
is($m->{code}, 'rate_limited', 'more channels than the burst at once: refused');
$s->send_json({ op => 'ping', id => 'p2' });
is_deeply($s->recv_json(timeout => 3), { type => 'pong', id => 'p2' }, 'the connection stays');
sleep 2;
$m = $s->subscribe(['slow:6'], id => 'r4');
is($m->{type}, 'subscribed', 'after the bucket refilled a subscribe is served again');
$s->close;

$ws->close;
$ngx->stop;
$ngx->check_log('no alerts');
done_testing();
