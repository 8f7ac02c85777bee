# ngx_http_insite_ws_module: RFC 6455 framing on a live connection. Every
# protocol violation closes with its RFC code (then the TCP connection goes);
# fragmentation, interleaved control frames, ping/pong and the closing
# handshake work; idle peers are pinged then closed with 1001; a slow
# consumer is closed with 1013 without costing a reading subscriber a single
# message; the counters in /status and /metrics follow.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Time::HiRes qw(time sleep);
use JSON::PP ();
use POSIX ();
use IO::Select ();
use Insite::Services qw(start_redis http_request);
use Insite::Nginx;
use Insite::WS;

my $JSON = JSON::PP->new->canonical;
my $redis = start_redis();
my $rport = $redis->port;

my $ngx = Insite::Nginx->new(
    http   => "    insite_redis 127.0.0.1:$rport;\n"
            . "    insite_ws_shutdown_spread 100ms;",
    server => "        location /ws { insite_ws; insite_ws_max_message_size 1k; }\n"
            . "        location /ws-idle {\n"
            . "            insite_ws;\n"
            . "            insite_ws_ping_interval 200ms;\n"
            . "            insite_ws_idle_timeout 600ms;\n"
            . "        }\n"
            . "        location /ws-slow { insite_ws; insite_ws_send_buffer 64k; }\n"
            . "        location /ws-reader { insite_ws; }\n"
            . "        location /pub { insite_ws_publish; insite_ws_max_message_size 256k;"
            . " insite_ws_history 50; }\n"
            . "        location /status { insite_ws_status; }\n"
            . "        location = /metrics { insite_metrics; }",
);
my $port = $ngx->port;
ok(Insite::WS->wait_ready($port), 'Redis connected in both workers');

END {
    diag "error log:\n" . Insite::WS->log_tail($ngx, 60)
        if $ngx && $ngx->pid && !Test::More->builder->is_passing;
}

sub status {
    my $res = http_request($port, 'GET', '/status');
    my $st = eval { $JSON->decode($res->{body} // '') };
    return $st if $st;
    diag 'no /status: ' . ($res->{error} // "status $res->{status}");
    return { closes => {}, connections => {} };
}
sub metric {
    my ($name) = @_;
    my ($v) = $ngx->get('/metrics')->{body} =~ /^\Q$name\E (\d+)$/m;
    return $v;
}

my $protocol_closes = 0;

# The server closes with $code: the close frame comes, we answer it, and the
# server closes TCP. Data frames before the close are ignored.
sub closed_with {
    my ($ws, $code, $name) = @_;
    my ($got, $reason) = $ws->expect_close(timeout => 3);
    is($got, $code, "$name: close $code")
        or diag "reason: " . ($reason // 'no close frame');
    ok(defined $reason && $reason =~ /^[\x20-\x7e]*$/ && length($reason) <= 123,
       "$name: a readable reason") if defined $got;
    $ws->send_close($code) if defined $got;
    ok($ws->wait_eof(3), "$name: TCP closed after the closing handshake");
    $ws->close;
}

# Each violating connection is closed with $code and counted once in
# closes.protocol (also when the peer answers our close, as it must).
# A number in @frames is a pause in seconds between writes.
sub violation {
    my ($name, $code, @frames) = @_;
    my $before = status()->{closes}{protocol};
    my $ws = Insite::WS->connect($port);
    for my $f (@frames) {
        if ($f =~ /^[0-9.]+\z/) { sleep $f } else { $ws->write_raw($f) }
    }
    closed_with($ws, $code, $name);
    $protocol_closes++;
    is(status()->{closes}{protocol} - $before, 1,
       "$name: counted once as a protocol close");
}

# --- every protocol violation, with its code -----------------------------------

my $F = \&Insite::WS::frame;
my $ping_json = '{"op":"ping"}';

violation('unmasked text frame', 1002, $F->(1, $ping_json, mask => 0));
violation('unmasked ping', 1002, $F->(9, 'x', mask => 0));
violation('RSV1 set', 1002, $F->(1, $ping_json, rsv => 4));
violation('RSV2 set', 1002, $F->(1, $ping_json, rsv => 2));
violation('RSV3 set on a ping', 1002, $F->(9, '', rsv => 1));
violation('reserved opcode 3', 1002, $F->(3, 'x'));
violation('reserved control opcode 0xB', 1002, $F->(0xb, 'x'));
violation('invalid UTF-8 in text', 1007, $F->(1, "{\"op\":\"ping\",\"id\":\"\xff\"}"));
violation('overlong UTF-8 encoding', 1007, $F->(1, "\xc0\xaf"));
violation('UTF-16 surrogate in UTF-8', 1007, $F->(1, "\xed\xa0\x80"));
violation('invalid UTF-8 split across fragments', 1007,
          $F->(1, "{\"id\":\"\xe2\x82", fin => 0), $F->(0, "\x28\"}"));
violation('UTF-8 sequence cut by the end of the message', 1007,
          $F->(1, "\"\xe2", fin => 0), $F->(0, "\x82"));
violation('bad UTF-8 continuation in the second fragment', 1007,
          $F->(1, "\"\xe2\x82", fin => 0), $F->(0, "\xe2"));
violation('message over insite_ws_max_message_size (one frame)', 1009,
          $F->(1, 'x' x 1100));
violation('message over the size in fragments', 1009,
          $F->(1, 'x' x 600, fin => 0), $F->(0, 'y' x 600));
violation('binary message', 1003, $F->(2, "\x00\x01\x02"));
violation('continuation without a start', 1002, $F->(0, 'x'));
violation('new text frame inside a fragmented message', 1002,
          $F->(1, '{"op":', fin => 0), $F->(1, '"ping"}'));
violation('ping with 126 bytes', 1002, $F->(9, 'p' x 126));
violation('close with 126 bytes', 1002, $F->(8, pack('n', 1000) . 'r' x 124));
violation('fragmented ping', 1002, $F->(9, 'x', fin => 0));
violation('close with a 1-byte payload', 1002, $F->(8, "\x03"));
violation('close code 1005 on the wire', 1002, $F->(8, pack('n', 1005)));
violation('close code 999', 1002, $F->(8, pack('n', 999)));
violation('close reason not UTF-8', 1007, $F->(8, pack('n', 1000) . "\xff"));

# the offending frame's payload arrives in a later packet than its header:
# it must not be parsed as frames of its own
violation('oversized frame, its payload in a later packet', 1009,
          substr($F->(1, 'x' x 1100), 0, 8), 0.3,
          substr($F->(1, 'x' x 1100), 8));
violation('invalid UTF-8, the rest of the frame in a later packet', 1007,
          substr($F->(1, "\xff" . ('x' x 300)), 0, 20), 0.3,
          substr($F->(1, "\xff" . ('x' x 300)), 20));

# a 64-bit length with the top bit set (RFC 6455 5.2)
violation('64-bit length with MSB set', 1002,
          chr(0x81) . chr(0x80 | 127) . pack('Q>', 2**63 + 5) . 'mask');

# --- what works ----------------------------------------------------------------

{
    my $ws = Insite::WS->connect($port);

    for my $p ('', 'hello', 'p' x 125, "\x00\xff\x10bin") {
        $ws->send_ping($p);
        my $f = $ws->recv_frame(timeout => 3);
        ok($f && $f->{opcode} == 10 && $f->{payload} eq $p && $f->{fin},
           'ping with ' . length($p) . ' bytes: pong with the same payload');
        ok($f && !$f->{masked}, '... unmasked');
    }

    # fragmented text, a ping in the middle of it
    $ws->send_frame(1, '{"op":"pi', fin => 0);
    $ws->send_ping('mid');
    $ws->send_frame(0, 'ng","i', fin => 0);
    $ws->send_frame(10, 'unsolicited pong');
    $ws->send_frame(0, 'd":"frag1"}');
    my $f = $ws->recv_frame(timeout => 3);
    ok($f && $f->{opcode} == 10 && $f->{payload} eq 'mid',
       'ping between fragments: answered at once with its payload');
    is_deeply($ws->recv_json(timeout => 3), { type => 'pong', id => 'frag1' },
              'the fragmented message (with an interleaved ping and pong) is handled');

    # UTF-8 code point split between fragments is fine
    $ws->send_frame(1, "{\"op\":\"ping\",\"id\":\"\xe2\x82", fin => 0);
    $ws->send_frame(0, "\xac\"}");
    my $m = $ws->recv_json(timeout => 3);
    is($m && $m->{id}, "\x{20ac}", 'a code point split across fragments is valid');

    # one byte at a time, header included
    my $raw = $F->(1, '{"op":"ping","id":"bytes"}');
    for my $i (0 .. length($raw) - 1) {
        $ws->write_raw(substr $raw, $i, 1);
        sleep 0.002;
    }
    is_deeply($ws->recv_json(timeout => 3), { type => 'pong', id => 'bytes' },
              'a frame trickling in byte by byte');

    # many frames in one write
    $ws->write_raw(join '', map { $F->(1, qq({"op":"ping","id":$_})) } 1 .. 50);
    my @ids = map { $_->{id} } $ws->collect(count => 50, timeout => 5);
    is_deeply(\@ids, [1 .. 50], '50 frames in one packet: 50 answers in order');

    # an empty fragment and 16-bit/64-bit lengths (non-minimal is allowed)
    $ws->send_frame(1, '', fin => 0);
    $ws->send_frame(0, '{"op":"ping","id":"e"}');
    is_deeply($ws->recv_json(timeout => 3), { type => 'pong', id => 'e' },
              'an empty first fragment');
    my $big = '{"op":"ping","id":"' . ('z' x 900) . '"}';
    $ws->send_text($big);
    is(length(($ws->recv_json(timeout => 3) // {})->{id} // ''), 900,
       'a 16-bit-length frame under the limit');
    $ws->write_raw(chr(0x81) . chr(0x80 | 127) . pack('Q>', 13) . "\0\0\0\0"
                   . '{"op":"ping"}');
    is_deeply($ws->recv_json(timeout => 3), { type => 'pong' },
              'a 64-bit length encoding of a small frame');

    # the closing handshake: our code echoed, then TCP closed
    $ws->send_close(1000, 'bye');
    my ($code, $reason) = $ws->expect_close(timeout => 3);
    is($code, 1000, 'close 1000 echoed with 1000');
    ok($ws->wait_eof(3), 'then the server closes TCP');
    $ws->close;
}

for my $c ([4000, 'app code'], [1001, ''], [3000, "\x{e9}t\x{e9}"]) {
    my $ws = Insite::WS->connect($port);
    my $reason = $c->[1];
    utf8::encode($reason);
    $ws->send_close($c->[0], $reason);
    my ($code) = $ws->expect_close(timeout => 3);
    is($code, $c->[0], "close $c->[0] echoed with the same code");
    ok($ws->wait_eof(3), "close $c->[0]: TCP closed");
    $ws->close;
}
{
    my $ws = Insite::WS->connect($port);
    $ws->send_frame(8, '');
    my $f = $ws->recv_frame(timeout => 3);
    ok($f && $f->{opcode} == 8 && $f->{payload} eq '',
       'an empty close is echoed empty');
    ok($ws->wait_eof(3), 'empty close: TCP closed');
    $ws->close;
}
{
    # nothing is answered after the peer's close frame
    my $ws = Insite::WS->connect($port);
    $ws->write_raw($F->(8, pack('n', 1000)) . $F->(1, '{"op":"ping"}'));
    my $f = $ws->recv_frame(timeout => 3);
    ok($f && $f->{opcode} == 8, 'data after a close frame: close echoed');
    my $next = $ws->recv_frame(timeout => 1);
    ok(!$next, 'and the data after the close is not answered');
    $ws->close;
}

# --- heartbeats: a silent client is pinged, then closed with 1001 -------------------

my $idle_before = status()->{closes}{idle};
{
    my $t0 = time;
    my $ws = Insite::WS->connect($port, path => '/ws-idle');
    my ($pings, $close, $reason) = (0, undef, '');
    while (my $f = $ws->recv_frame(timeout => 3)) {
        if ($f->{opcode} == 9) { $pings++; next }
        if ($f->{opcode} == 8) {
            $close = unpack 'n', $f->{payload};
            $reason = substr $f->{payload}, 2;
            last;
        }
    }
    my $took = time - $t0;
    cmp_ok($pings, '>=', 1, "silent client: pinged ($pings pings)");
    is($close, 1001, 'silent client: closed with 1001');
    like($reason, qr/idle/i, '... the reason says idle');
    cmp_ok($took, '>=', 0.5, '... not before the idle timeout');
    cmp_ok($took, '<', 3, '... and not long after it');
    $ws->send_close(1001);
    ok($ws->wait_eof(3), 'silent client: TCP closed');
    $ws->close;
}
{
    # a client that answers pings stays past many idle timeouts
    my $ws = Insite::WS->connect($port, path => '/ws-idle');
    my ($pings, $closed) = (0, 0);
    my $end = time + 2;
    while (time < $end) {
        my $f = $ws->recv_frame(timeout => $end - time) // last;
        if ($f->{opcode} == 9) { $pings++; $ws->send_frame(10, $f->{payload}) }
        $closed = 1 if $f->{opcode} == 8;
    }
    cmp_ok($pings, '>=', 4, "pong-answering client: $pings pings in 2 s");
    ok(!$closed && !$ws->eof, 'pong-answering client: still open after 2 s');
    $ws->send_json({ op => 'ping', id => 'alive' });
    is_deeply($ws->recv_json(timeout => 3), { type => 'pong', id => 'alive' },
              '... and still served');
    $ws->close;
}
is(status()->{closes}{idle} - $idle_before, 1, 'status: one idle close counted');

# --- slow consumer -------------------------------------------------------------

my $chan = 'stock_updates:SLOW';
my $N = 160;
my $fill = 'x' x 20000;    # a 20 kB message; 160 of them: 3.2 MB

my $slow = Insite::WS->connect($port, path => '/ws-slow', rcvbuf => 4096);
my $sub = $slow->subscribe([$chan], id => 's');
is($sub && $sub->{type}, 'subscribed', 'slow consumer subscribed');
# the reader has the default send buffer (1m): a reading test client can be
# descheduled for a moment on a busy machine, and is not what is tested here
my $reader = Insite::WS->connect($port, path => '/ws-reader');
$sub = $reader->subscribe([$chan], id => 'r');
is($sub && $sub->{type}, 'subscribed', 'reading subscriber subscribed');
my $slow_before = status()->{closes}{slow_consumer};

# the slow consumer stops reading; a child publishes
my $pid = fork // die "fork: $!";
if ($pid == 0) {
    my $ok = 1;
    for my $i (1 .. $N) {
        my $res = Insite::WS->publish($port, $chan,
            { type => 'stock_update', data => { i => $i, fill => $fill } });
        $ok = 0 unless ($res->{status} // 0) == 201;
        sleep 0.002;
    }
    POSIX::_exit($ok ? 0 : 1);
}
# The reader reads all along. The slow consumer reads nothing until the
# server has closed it (the status counter says so); then it drains its
# socket at once, before the server gives up on delivering the close frame.
my (@seqs, @slow_seqs, $slow_code, $slow_closes, $garbled);
$garbled = 0;
my $slow_reading = 0;
my $next_poll = 0;
my $deadline = time + 20;
while (time < $deadline) {
    for my $f (grep { $_->{opcode} == 1 } $reader->pump) {
        # the seq by a pattern: decoding 20 kB in pure Perl is slow
        my ($seq) = $f->{payload} =~ /^\{"type":"stock_update","channel":"[^"]+","seq":(\d+),"ts":"[^"]+","data":\{/;
        my $m = defined $seq && substr($f->{payload}, -2) eq '}}' ? { seq => $seq } : undef;
        if (!$m) {
            $garbled++;
            diag 'reader: a text frame that is not JSON after seq '
               . ($seqs[-1] // 'none') . ': ' . length($f->{payload})
               . ' bytes: ' . substr($f->{payload}, 0, 60) if $garbled < 3;
            next;
        }
        push @seqs, $m->{seq} if defined $m->{seq};
    }
    if (!$slow_reading && time >= $next_poll) {
        $slow_closes = status()->{closes}{slow_consumer} - $slow_before;
        $slow_reading = 1 if $slow_closes;
        $next_poll = time + 0.1;
    }
    if ($slow_reading && !defined $slow_code) {
        for my $f ($slow->pump) {
            push @slow_seqs, ($f->{payload} =~ /^\{"type":"stock_update","channel":"[^"]+","seq":(\d+),/)[0]
                             // 'garbled' if $f->{opcode} == 1;
            $slow_code = unpack 'n', $f->{payload} if $f->{opcode} == 8;
        }
        $slow_code //= 'EOF without a close frame' if $slow->eof;
    }
    last if @seqs && $seqs[-1] >= $N && defined $slow_code;
    my @socks = map { $_->sock } grep { !$_->eof } $reader, ($slow_reading ? $slow : ());
    if (@socks) { IO::Select->new(@socks)->can_read(0.05) } else { sleep 0.05 }
}
waitpid $pid, 0;
is($? >> 8, 0, "the publisher got 201 for all $N messages");
is($garbled, 0, 'the reading subscriber got no garbled frame');
is(Insite::WS->seq_problem(\@seqs, 1, $N), '',
   "the reading subscriber got every message 1..$N, once, in order");
is($slow_closes, 1, 'status: one slow-consumer close');
is($slow_code, 1013, 'the slow consumer was closed with 1013');
ok(@slow_seqs < $N, 'the slow consumer did not get everything ('
   . scalar(@slow_seqs) . " of $N)");
is(Insite::WS->seq_problem(\@slow_seqs, 1), '',
   'what it got before the close is a gap-free run from 1');
$slow->close;

like($ngx->error_log, qr/\[warn\].*slow consumer.*closing with 1013/,
     'the slow consumer is logged');
is(metric('insite_ws_slow_consumer_closes_total'), status()->{closes}{slow_consumer},
   'metrics and status agree on slow-consumer closes');

$reader->send_close(1000);
$reader->expect_close(timeout => 3);
$reader->close;

# --- counters ------------------------------------------------------------------

my $st = status();
is($st->{closes}{protocol}, $protocol_closes,
   "status: $protocol_closes protocol closes, one per violation");
is(metric('insite_ws_protocol_closes_total'), $protocol_closes,
   'metrics: the same number');
$deadline = time + 5;
while (time < $deadline && status()->{connections}{now} != 0) { sleep 0.05 }
$st = status();
is($st->{connections}{now}, 0, 'status: no connection left open');
is($st->{subscriptions}, 0, 'status: no subscription left');
is($st->{channels}, 0, 'status: no channel left');
is(metric('insite_ws_connections'), 0, 'metrics: 0 connections');

$ngx->stop;
$ngx->check_log;

done_testing;
