# ngx_http_insite_ws_module: conflation of "latest value wins" channels
# (insite_ws_conflate, insite_ws_conflate_after; issue 18).
#
# A subscriber on a slow link (a small receive window) that stops reading
# while a quote channel runs far past insite_ws_send_buffer is not closed
# with 1013: its queued, unsent messages of that channel are replaced by the
# newest one, which carries "conflated":N and "first_seq":F (it stands for
# seq F..seq). The WebSocket listener has a small kernel send buffer
# (listen ... sndbuf=16k). Reading what arrived, the client's seq check stays exact:
# every message or conflated range follows the previous one with no gap and
# no overlap, the last one is the newest price, and the number of frames it
# saved equals insite_ws_messages_conflated_total. It then keeps up with a
# publisher while reading slowly, still exact.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Time::HiRes qw(time sleep);
use POSIX ();
use Insite::Services qw(start_redis);
use Insite::Nginx;
use Insite::WS;

plan skip_all => 'TEST_NGINX_LOAD_MODULES not set (run under scripts/test.sh)'
    unless $ENV{TEST_NGINX_LOAD_MODULES};

my $redis = start_redis();
my $rport = $redis->port;

# The kernel's send buffer is a queue nginx cannot conflate: a listener
# with a small one (as the docs advise for such locations) keeps the backlog
# in nginx, where it is conflated.
my $wsport = Insite::Services::free_port();
my $ngx = Insite::Nginx->new(
    http   => "    insite_redis 127.0.0.1:$rport;\n"
            . "    insite_ws_send_buffer 64k;\n"
            . "    insite_ws_conflate stock_updates:* quotes:*;\n"
            . "    insite_ws_conflate_after 8k;\n",
    server => "        listen 127.0.0.1:$wsport sndbuf=16k;\n"
            . "        location /ws { insite_ws; }\n"
            . "        location /pub { insite_ws_publish; }\n"
            . "        location /status { insite_ws_status; }\n"
            . "        location = /metrics { insite_metrics; }",
);
my $port = $ngx->port;
ok(Insite::WS->wait_ready($port), 'Redis connected in both workers');

sub metric {
    my ($name) = @_;
    my ($v) = ($ngx->get('/metrics')->{body} // '') =~ /^\Q$name\E (\d+)$/m;
    return $v // -1;
}

my $ch = 'stock_updates:CONF';
my $fill = 'q' x 1000;

sub pub {
    my ($i) = @_;
    my $r = Insite::WS->publish($port, $ch,
        { type => 'stock_update', data => { price => $i, fill => $fill } });
    return ($r->{status} // 0) == 201;
}

# Follows the channel like a client does: each frame must start right after
# the previous one (a conflated frame at first_seq, a plain one at seq).
# Returns the problem, or '' when the chain is exact.
my ($next, $frames, $conflated_frames, $merged, $last_price, $problem) = (1, 0, 0, 0, 0, '');
sub follow {
    my ($m) = @_;
    return if ($m->{channel} // '') ne $ch;
    $frames++;
    my $first = $m->{seq};
    if (exists $m->{conflated} || exists $m->{first_seq}) {
        $first = $m->{first_seq};
        $conflated_frames++;
        $problem ||= "seq $m->{seq}: conflated $m->{conflated} does not match first_seq $first"
            unless $m->{conflated} == $m->{seq} - $first + 1 && $m->{conflated} >= 2;
        $merged += $m->{conflated} - 1;
    }
    $problem ||= "expected $next, got a frame for $first..$m->{seq}" if $first != $next;
    $problem ||= "seq $m->{seq} carries price $m->{data}{price}" if $m->{data}{price} != $m->{seq};
    $next = $m->{seq} + 1;
    $last_price = $m->{data}{price};
}

my $slow = Insite::WS->connect($wsport, rcvbuf => 4096);
my $s = $slow->subscribe([$ch]);
is($s && $s->{type}, 'subscribed', 'the slow client subscribed');
my $before = metric('insite_ws_messages_conflated_total');
cmp_ok($before, '>=', 0, 'insite_ws_messages_conflated_total is exported');

# --- it stops reading; 300 kB of quotes, far past the 64 kB send buffer ------
my $N = 300;
my $ok = 1;
$ok &&= pub($_) for 1 .. $N;
ok($ok, "published 1..$N (each ~1 kB)");

my ($closed, $deadline) = (undef, time + 20);
while (time < $deadline && $next <= $N && !defined $closed) {
    my $f = $slow->recv_frame(timeout => 0.5) // next;
    if ($f->{opcode} == 8) { $closed = unpack 'n', $f->{payload}; last }
    next unless $f->{opcode} == 1;
    follow(Insite::WS::json()->decode($f->{payload}));
}
ok(!defined $closed, 'the slow client was not closed') or diag "closed with $closed";
is($problem, '', 'every frame follows the previous one: the seq check stays exact');
is($next - 1, $N, "it reached seq $N");
is($last_price, $N, 'the last frame carries the newest price');
cmp_ok($conflated_frames, '>=', 1, "conflated frames: $conflated_frames, standing for $merged merged messages");
is($frames + $merged, $N, "frames ($frames) + merged ($merged) = $N: nothing lost, nothing twice");
is(metric('insite_ws_messages_conflated_total') - $before, $N - $frames,
   'insite_ws_messages_conflated_total counts the frames saved');
is(metric('insite_ws_slow_consumer_closes_total'), 0, 'no slow-consumer close');

# --- a publisher keeps going while the client reads slowly -------------------
my $M = 600;
my $pid = fork // die "fork: $!";
if ($pid == 0) {
    my $good = 1;
    $good &&= pub($_) for $N + 1 .. $M;
    POSIX::_exit($good ? 0 : 1);
}
$deadline = time + 40;
while (time < $deadline && $next <= $M && !defined $closed) {
    my $f = $slow->recv_frame(timeout => 0.5) // next;
    if ($f->{opcode} == 8) { $closed = unpack 'n', $f->{payload}; last }
    next unless $f->{opcode} == 1;
    follow(Insite::WS::json()->decode($f->{payload}));
    sleep 0.01;                     # a slow reader
}
waitpid $pid, 0;
is($? >> 8, 0, "published " . ($N + 1) . "..$M meanwhile");
ok(!defined $closed, 'still connected') or diag "closed with $closed";
is($problem, '', 'still exact');
is($next - 1, $M, "it reached seq $M, the newest price ($last_price)");
is($frames + $merged, $M, "frames ($frames) + merged ($merged) = $M");

$slow->send_close(1000);
$slow->expect_close(timeout => 3);
$slow->close;
$ngx->check_log;
$ngx->stop;

done_testing();
