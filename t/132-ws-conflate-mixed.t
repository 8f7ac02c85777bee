# ngx_http_insite_ws_module: conflation per channel, on one connection, and
# its directives (issue 18).
#  - a slow client holding two conflated quote channels and one ordinary
#    channel: each quote channel is conflated on its own (its chain of
#    frames and conflated ranges exact, ending at its newest price), the
#    ordinary channel's messages all arrive unmarked, the client stays;
#  - it resumes on a new connection with since = the last seq it saw, and
#    gets what followed, exactly;
#  - nginx -t: insite_ws_conflate patterns and insite_ws_conflate_after
#    range are checked, duplicates refused.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Time::HiRes qw(time sleep);
use Insite::Services qw(start_redis);
use Insite::Nginx;
use Insite::WS;

plan skip_all => 'TEST_NGINX_LOAD_MODULES not set (run under scripts/test.sh)'
    unless $ENV{TEST_NGINX_LOAD_MODULES};

# --- nginx -t ------------------------------------------------------------------
sub nginx_t {
    my ($loc) = @_;
    return Insite::Nginx->config_test(server => "        location /ws { insite_ws; $loc }");
}
for my $case (
    [ 'insite_ws_conflate stock/updates:*;', qr/"insite_ws_conflate": invalid pattern "stock\/updates:\*"/ ],
    [ 'insite_ws_conflate a:*; insite_ws_conflate b:*;', qr/"insite_ws_conflate" directive is duplicate/ ],
    [ 'insite_ws_conflate_after 2048m;', qr/"insite_ws_conflate_after" directive must be 0 to 1024m, not "2048m"/ ],
    [ 'insite_ws_conflate_after lots;', qr/"insite_ws_conflate_after" directive invalid value/ ],
) {
    my ($ok, $out) = nginx_t($case->[0]);
    ok(!$ok, "nginx -t refuses: $case->[0]");
    like($out, $case->[1], '... naming the directive and the value') or diag $out;
}
for my $loc ('insite_ws_conflate stock_updates:* quotes:*; insite_ws_conflate_after 0;',
             'insite_ws_conflate *; insite_ws_conflate_after 1m;') {
    my ($ok, $out) = nginx_t($loc);
    ok($ok, "nginx -t accepts: $loc") or diag $out;
}

# --- one slow connection, three channels -------------------------------------------
my $redis = start_redis();
my $rport = $redis->port;
my $wsport = Insite::Services::free_port();
my $ngx = Insite::Nginx->new(
    http   => "    insite_redis 127.0.0.1:$rport;\n"
            . "    insite_ws_send_buffer 64k;\n"
            . "    insite_ws_conflate stock_updates:*;\n"
            . "    insite_ws_conflate_after 4k;\n",
    server => "        listen 127.0.0.1:$wsport sndbuf=16k;\n"
            . "        location /ws { insite_ws; }\n"
            . "        location /pub { insite_ws_publish; }\n"
            . "        location /status { insite_ws_status; }",
);
my $port = $ngx->port;
ok(Insite::WS->wait_ready($port), 'Redis connected in both workers');

my ($A, $B, $N) = ('stock_updates:AAA', 'stock_updates:BBB', 'system:notifications');
my $fill = 'q' x 700;
sub pub {
    my ($ch, $i) = @_;
    my $r = Insite::WS->publish($port, $ch, { type => 'tick', data => { price => $i, fill => $fill } });
    return ($r->{status} // 0) == 201;
}

# per channel: next expected seq, frames, merged, last price, first problem
my %st;
sub follow {
    my ($m) = @_;
    my $c = $m->{channel} // return;
    my $s = $st{$c} //= { next => 1, frames => 0, merged => 0, conflated => 0, problem => '' };
    $s->{frames}++;
    my $first = $m->{seq};
    if (exists $m->{conflated}) {
        $first = $m->{first_seq};
        $s->{conflated}++;
        $s->{merged} += $m->{conflated} - 1;
        $s->{problem} ||= "seq $m->{seq}: conflated $m->{conflated}, first_seq $first"
            unless $m->{conflated} == $m->{seq} - $first + 1;
    }
    $s->{problem} ||= "expected $s->{next}, got $first..$m->{seq}" if $first != $s->{next};
    $s->{next} = $m->{seq} + 1;
    $s->{price} = $m->{data}{price};
}
sub read_until {
    my ($ws, $done, $timeout) = @_;
    my $deadline = time + $timeout;
    while (time < $deadline && !$done->()) {
        my $f = $ws->recv_frame(timeout => 0.5) // next;
        return unpack('n', $f->{payload}) if $f->{opcode} == 8;
        follow(Insite::WS::json()->decode($f->{payload})) if $f->{opcode} == 1;
    }
    return undef;
}

my $ws = Insite::WS->connect($wsport, rcvbuf => 4096);
my $s = $ws->subscribe([$A, $B, $N]);
is($s && $s->{type}, 'subscribed', 'the slow client holds two quote channels and system:notifications');

# interleaved: 150 quotes on each, a notification every 30
my $ok = 1;
for my $i (1 .. 150) {
    $ok &&= pub($A, $i) && pub($B, $i);
    $ok &&= pub($N, $i / 30) if $i % 30 == 0;
}
ok($ok, 'published 150 quotes on each channel and 5 notifications');
sub next_of { my ($c) = @_; return $st{$c} ? $st{$c}{next} : 1 }
my $code = read_until($ws, sub { next_of($A) > 150 && next_of($B) > 150 && next_of($N) > 5 }, 20);
ok(!defined $code, 'the client stays') or diag "closed with $code";
for my $c ($A, $B) {
    is($st{$c}{problem}, '', "$c: exact chain of frames and conflated ranges");
    is($st{$c}{price}, 150, "$c: ends at the newest price");
    cmp_ok($st{$c}{conflated}, '>=', 1, "$c: $st{$c}{conflated} conflated frame(s), $st{$c}{merged} merged");
    is($st{$c}{frames} + $st{$c}{merged}, 150, "$c: frames + merged = 150");
}
is($st{$N}{problem}, '', "$N: in order");
is($st{$N}{conflated}, 0, "$N: not conflated");
is($st{$N}{frames}, 5, "$N: all 5 notifications");
$ws->close;

# --- resume on a new connection from the last seq seen ------------------------------
$ok = 1;
$ok &&= pub($A, $_) for 151 .. 160;
ok($ok, "published 151..160 on $A while disconnected");
my $ws2 = Insite::WS->connect($wsport);
$s = $ws2->subscribe([$A], since => { $A => 150 });
is($s && $s->{type}, 'subscribed', 'resumed with since 150');
$code = read_until($ws2, sub { $st{$A}{next} > 160 }, 10);
is($st{$A}{problem}, '', "$A: 151..160 follow exactly");
is($st{$A}{price}, 160, "$A: the newest price");
$ws2->close;

$ngx->check_log;
$ngx->stop;

done_testing();
