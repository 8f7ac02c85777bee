# ngx_http_insite_ws_module: permessage-deflate (RFC 7692; issue 18).
#  - a client offering the extension as Chromium does gets it, without
#    context takeover on either side; one offering nothing, or connecting to
#    a location with insite_ws_deflate off, does not;
#  - every subscriber sees the same messages: the deflating ones get
#    messages of at least insite_ws_deflate_min_size as RSV1 frames that
#    inflate, each on its own, to exactly the bytes the plain client gets,
#    and smaller on the wire; smaller messages and replies stay plain;
#  - a window limit the client asks for (server_max_window_bits=10) is
#    answered and kept to (the frames inflate with a 1 kB window);
#  - compressed client messages (whole or fragmented) are understood; RSV1
#    on a continuation frame is 1002, bad deflate data 1007, a message that
#    inflates past insite_ws_max_message_size 1009.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Time::HiRes qw(time sleep);
use Compress::Raw::Zlib ();
use Insite::Services qw(start_redis);
use Insite::Nginx;
use Insite::WS;

plan skip_all => 'TEST_NGINX_LOAD_MODULES not set (run under scripts/test.sh)'
    unless $ENV{TEST_NGINX_LOAD_MODULES};

my $redis = start_redis();
my $rport = $redis->port;
my $ngx = Insite::Nginx->new(
    http   => "    insite_redis 127.0.0.1:$rport;\n",
    server => "        location /ws { insite_ws; insite_ws_deflate on;\n"
            . "                       insite_ws_max_channels 50;\n"
            . "                       insite_ws_deflate_min_size 200;\n"
            . "                       insite_ws_max_message_size 4k; }\n"
            . "        location /plain { insite_ws; }\n"
            . "        location /pub { insite_ws_publish; }\n"
            . "        location /status { insite_ws_status; }",
);
my $port = $ngx->port;
ok(Insite::WS->wait_ready($port), 'Redis connected in both workers');

my $CHROME = 'permessage-deflate; client_max_window_bits';
sub ext { my ($ws) = @_; my ($e) = ($ws->head // '') =~ /^Sec-WebSocket-Extensions:\s*([^\r\n]*)/mi; $e }

my $z = Insite::WS->connect($port, path => '/ws', headers => ['Sec-WebSocket-Extensions' => $CHROME]);
is($z->status, 101, 'deflate offer: 101');
is(ext($z), 'permessage-deflate; server_no_context_takeover; client_no_context_takeover',
   'the answer: permessage-deflate without context takeover on either side');
my $z10 = Insite::WS->connect($port, path => '/ws',
    headers => ['Sec-WebSocket-Extensions' => 'permessage-deflate; server_max_window_bits=10']);
is(ext($z10), 'permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10',
   'a window limit asked for is answered');
my $plain = Insite::WS->connect($port, path => '/ws');
is(ext($plain), undef, 'no offer: no extension');
my $off = Insite::WS->connect($port, path => '/plain', headers => ['Sec-WebSocket-Extensions' => $CHROME]);
is(ext($off), undef, 'insite_ws_deflate off: the offer is not taken');

my $ch = 'stock_updates:ZIP';
# the deflating client subscribes with a compressed message
$z->send_frame(1, Insite::WS::deflate_message(Insite::WS::json()->encode(
    { op => 'subscribe', channels => [$ch], id => 'z1' })), rsv => 4);
my $f = $z->recv_frame(timeout => 5);
my $reply = $f && Insite::WS::json()->decode($f->{payload});
is($reply && $reply->{type}, 'subscribed', 'a compressed subscribe is understood');
is($f && $f->{rsv}, 0, 'the small reply is sent plain');
for my $ws ($z10, $plain, $off) {
    my $s = $ws->subscribe([$ch]);
    is($s && $s->{type}, 'subscribed', 'subscribed');
}

# 10 large compressible messages, 5 small ones
my @sent;
for my $i (1 .. 15) {
    my $data = $i <= 10 ? { i => $i, quotes => [ map { { sym => "S$_", px => 100 + $_ } } 1 .. 40 ] } : { i => $i };
    my $r = Insite::WS->publish($port, $ch, { type => 'stock_update', data => $data });
    is($r->{status}, 201, "publish $i") or last;
}

sub frames {
    my ($ws, $n) = @_;
    my @got;
    my $deadline = time + 10;
    while (@got < $n && time < $deadline) {
        my $fr = $ws->recv_frame(timeout => 1) // next;
        push @got, $fr if $fr->{opcode} == 1;
    }
    return \@got;
}
sub inflate10 {
    my ($data) = @_;
    my ($i) = Compress::Raw::Zlib::Inflate->new(-WindowBits => -10, -AppendOutput => 1);
    my $in = $data . "\x00\x00\xff\xff";
    my $out = '';
    my $rc = $i->inflate($in, $out);
    return $rc == Compress::Raw::Zlib::Z_OK() ? $out : undef;
}

my %got = map { $_ => frames($_ == $z ? $z : $_ == $z10 ? $z10 : $_ == $plain ? $plain : $off, 15) }
          ($z, $z10, $plain, $off);
my ($gz, $gz10, $gp, $goff) = @got{$z, $z10, $plain, $off};
is(scalar @$gp, 15, 'the plain client got 15 messages');
is(scalar @$gz, 15, 'the deflating client got 15 messages');
is(scalar @$gz10, 15, 'the 10-bit client got 15 messages');
is(join(',', map { $_->{rsv} } @$gp, @$goff), join(',', (0) x 30), 'plain clients: no RSV1');
is(join(',', map { $_->{rsv} } @$gz), join(',', (4) x 10, (0) x 5),
   'deflating client: the 10 large messages compressed (RSV1), the 5 small ones plain');
my ($same, $same10, $smaller) = (0, 0, 0);
for my $k (0 .. 14) {
    my $want = $gp->[$k]{payload};
    my $a = $gz->[$k]{rsv} ? Insite::WS::inflate_message($gz->[$k]{payload}) : $gz->[$k]{payload};
    my $b = $gz10->[$k]{rsv} ? inflate10($gz10->[$k]{payload}) : $gz10->[$k]{payload};
    $same++ if defined $a && $a eq $want;
    $same10++ if defined $b && $b eq $want;
    $smaller++ if $gz->[$k]{rsv} && length($gz->[$k]{payload}) * 3 < length $want;
}
is($same, 15, 'each message inflates, on its own, to exactly what the plain client got');
is($same10, 15, '... and with a 1 kB window for the client that asked for it');
is($smaller, 10, 'the compressed messages are under a third of their size on the wire');
is(join(',', map { Insite::WS::json()->decode($_->{payload})->{seq} } @$gp), join(',', 1 .. 15),
   'seqs 1..15 in order');
is($goff->[0]{payload}, $gp->[0]{payload}, 'the location without deflate sends plain');

# --- compressed client messages ------------------------------------------------
# a compressed subscribe whose reply is large enough to be compressed too:
# the request (inflated) and the reply (deflated) must not share a buffer
{
    my @many = map { "stock_updates:MANY$_" } 1 .. 25;
    $z->send_frame(1, Insite::WS::deflate_message(Insite::WS::json()->encode(
        { op => 'subscribe', channels => \@many, id => 'many' })), rsv => 4);
    my $fr = $z->recv_frame(timeout => 5);
    my $text = $fr && ($fr->{rsv} ? Insite::WS::inflate_message($fr->{payload}) : $fr->{payload});
    my $m = $text && eval { Insite::WS::json()->decode($text) };
    is($fr && $fr->{rsv}, 4, 'the large subscribed reply is compressed');
    is($m && $m->{id}, 'many', '... and answers the compressed request');
    is(join(',', sort keys %{ $m && $m->{channels} || {} }), join(',', sort @many),
       '... naming all 25 channels');
}

# fragmented: RSV1 on the first frame only
my $zp = Insite::WS::deflate_message('{"op":"ping","id":"frag"}');
my $cut = int(length($zp) / 2);
$z->send_frame(1, substr($zp, 0, $cut), fin => 0, rsv => 4);
$z->send_frame(0, substr($zp, $cut));
my $pong = $z->recv_json(timeout => 5);
is($pong && $pong->{id}, 'frag', 'a fragmented compressed message is understood');

sub closes_with {
    my ($name, $code, @frames) = @_;
    my $ws = Insite::WS->connect($port, path => '/ws', headers => ['Sec-WebSocket-Extensions' => $CHROME]);
    $ws->write_raw($_) for @frames;
    my ($c) = $ws->expect_close(timeout => 5);
    is($c, $code, "$name: closed with $code");
    $ws->close;
}
closes_with('RSV1 on a continuation frame', 1002,
            Insite::WS::frame(1, substr($zp, 0, $cut), fin => 0, rsv => 4),
            Insite::WS::frame(0, substr($zp, $cut), rsv => 4));
closes_with('RSV1 on a ping', 1002, Insite::WS::frame(9, 'x', rsv => 4));
closes_with('bad deflate data', 1007, Insite::WS::frame(1, "\xff\xff\xff\xff\xff", rsv => 4));
closes_with('inflates to invalid UTF-8', 1007,
            Insite::WS::frame(1, Insite::WS::deflate_message("{\"op\":\"\xc3\x28\"}"), rsv => 4));
closes_with('inflates past insite_ws_max_message_size (4k)', 1009,
            Insite::WS::frame(1, Insite::WS::deflate_message('{"op":"ping","pad":"' . ('a' x 100000) . '"}'), rsv => 4));

# the plain client: RSV1 is still a violation
$plain->write_raw(Insite::WS::frame(1, $zp, rsv => 4));
my ($pc) = $plain->expect_close(timeout => 5);
is($pc, 1002, 'RSV1 from a client that did not negotiate: 1002');

$_->close for $z, $z10, $plain, $off;
like($ngx->error_log, qr/compressed message inflates past insite_ws_max_message_size/, 'the 1009 is logged with its cause');
$ngx->check_log;
$ngx->stop;

done_testing();
