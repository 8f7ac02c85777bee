# ngx_http_insite_ws_module: insite_ws_notsent_lowat (issue 18, slow links).
#
# The kernel's send buffer is a queue no conflation reaches: on loopback
# (and any fast link) it is autotuned to megabytes, so a reader that stops
# reading gets every stale tick first.  Two locations on one listener with
# the kernel's default buffers, both conflating stock_updates:*; /wsl also
# has insite_ws_notsent_lowat 2k.  Two readers with a 4 KB receive window
# stop reading while 300 quotes of ~1 kB are published, then read it all:
# - through /wsl a conflated frame (the newest price, standing for every
#   message the reader missed) comes after a few stale frames, fewer than
#   a receive window, the low-water mark and insite_ws_conflate_after hold;
# - through /ws the kernel took the backlog, and the reader gets far more
#   stale frames before anything newer.
# Both chains stay exact (conflated frames carry first_seq) and end at the
# newest price; nothing is lost and no reader is closed.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Time::HiRes qw(time);
use Insite::Services qw(start_redis);
use Insite::Nginx;
use Insite::WS;

plan skip_all => 'TEST_NGINX_LOAD_MODULES not set (run under scripts/test.sh)'
    unless $ENV{TEST_NGINX_LOAD_MODULES};

my $redis = start_redis();
my $rport = $redis->port;

my $ngx = Insite::Nginx->new(
    http   => "    insite_redis 127.0.0.1:$rport;\n"
            . "    insite_ws_conflate stock_updates:*;\n"
            . "    insite_ws_conflate_after 8k;\n",
    server => "        location /ws { insite_ws; }\n"
            . "        location /wsl { insite_ws; insite_ws_notsent_lowat 2k; }\n"
            . "        location /pub { insite_ws_publish; }\n"
            . "        location /status { insite_ws_status; }\n"
            . "        location = /metrics { insite_metrics; }",
);
my $port = $ngx->port;
ok(Insite::WS->wait_ready($port), 'Redis connected in both workers');

my $ch = 'stock_updates:LOWAT';
my $fill = 'q' x 1000;
my $N = 300;

my %reader;
for my $path ('/ws', '/wsl') {
    my $ws = Insite::WS->connect($port, path => $path, rcvbuf => 4096);
    my $s = $ws->subscribe([$ch]);
    is($s && $s->{type}, 'subscribed', "the reader on $path subscribed");
    $reader{$path} = $ws;
}

# --- both stop reading; 300 kB of quotes ------------------------------------
my $ok = 1;
for my $i (1 .. $N) {
    my $r = Insite::WS->publish($port, $ch,
        { type => 'stock_update', data => { price => $i, fill => $fill } });
    $ok &&= ($r->{status} // 0) == 201;
}
ok($ok, "published 1..$N (each ~1 kB)");

# Reads everything: how many stale frames came before the first conflated
# one, and whether the chain is exact (each frame starts right after the
# previous one: a conflated frame at first_seq, a plain one at seq).
sub drain {
    my ($ws) = @_;
    my %r = (next => 1, frames => 0, conflated => 0, stale => 0, last => 0, problem => '');
    my $deadline = time + 20;
    while (time < $deadline && $r{next} <= $N) {
        my $f = $ws->recv_frame(timeout => 0.5) // next;
        if ($f->{opcode} == 8) { $r{closed} = unpack 'n', $f->{payload}; last }
        next unless $f->{opcode} == 1;
        my $m = Insite::WS::json()->decode($f->{payload});
        next if ($m->{channel} // '') ne $ch;
        $r{frames}++;
        my $first = $m->{seq};
        if (exists $m->{conflated}) {
            $first = $m->{first_seq};
            $r{conflated}++;
            $r{problem} ||= "seq $m->{seq}: conflated $m->{conflated} vs first_seq $first"
                unless $m->{conflated} == $m->{seq} - $first + 1;
        } elsif (!$r{conflated}) {
            $r{stale}++;
        }
        $r{problem} ||= "expected $r{next}, got $first..$m->{seq}" if $first != $r{next};
        $r{next} = $m->{seq} + 1;
        $r{last} = $m->{data}{price};
    }
    return \%r;
}

my $l = drain($reader{'/wsl'});
my $d = drain($reader{'/ws'});

ok(!defined $l->{closed}, '/wsl: not closed') or diag "closed with $l->{closed}";
is($l->{problem}, '', '/wsl: every frame follows the previous one');
is($l->{last}, $N, '/wsl: the last frame carries the newest price');
cmp_ok($l->{conflated}, '>=', 1, "/wsl: conflated frames: $l->{conflated} of $l->{frames}");
# 4 KB window (8 KB as the kernel counts it) + 2k unsent + the 8k run + the
# message that passes it: ~20 frames of ~1.1 kB; 40 leaves room
cmp_ok($l->{stale}, '<=', 40, "/wsl: stale frames before the newest price: $l->{stale}");

ok(!defined $d->{closed}, '/ws: not closed') or diag "closed with $d->{closed}";
is($d->{problem}, '', '/ws: every frame follows the previous one');
is($d->{last}, $N, '/ws: the last frame carries the newest price');
cmp_ok($d->{stale}, '>', 2 * $l->{stale},
       "/ws (no low-water mark): stale frames first: $d->{stale}, the kernel held them");

for my $ws (values %reader) {
    $ws->send_close(1000);
    $ws->expect_close(timeout => 3);
    $ws->close;
}
unlike($ngx->error_log, qr/TCP_NOTSENT_LOWAT/, 'no setsockopt failure logged');
$ngx->check_log;
$ngx->stop;

done_testing();
