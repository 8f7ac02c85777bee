# ngx_http_insite_ws_module: the JSON wire protocol (issue 3) and the
# publish endpoint. Errors are frames and the connection stays; "id" is
# echoed on every reply to a request that carried one; the channel limit and
# private channels; unsubscribe; the published envelope, its defaults, seq
# and idempotency.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Time::HiRes qw(time sleep);
use JSON::PP ();
use POSIX ();
use Insite::Services qw(start_redis http_request);
use Insite::Nginx;
use Insite::WS;

my $JSON = JSON::PP->new->utf8->canonical;
my $redis = start_redis();
my $rport = $redis->port;

my $ngx = Insite::Nginx->new(
    http   => "    insite_redis 127.0.0.1:$rport;\n"
            . "    insite_ws_shutdown_spread 100ms;",
    server => "        location /ws { insite_ws; }\n"
            . "        location /ws3 { insite_ws; insite_ws_max_channels 3; }\n"
            . "        location /ws-user {\n"
            . "            insite_ws;\n"
            . "            insite_ws_user \$http_x_user;\n"
            . "            insite_ws_private_prefix alert:;\n"
            . "        }\n"
            . "        location /pub { insite_ws_publish; insite_ws_max_message_size 1k; }\n"
            . "        location /status { insite_ws_status; }",
);
my $port = $ngx->port;
ok(Insite::WS->wait_ready($port), 'Redis connected in both workers');

END {
    diag "error log:\n" . Insite::WS->log_tail($ngx, 60)
        if $ngx && $ngx->pid && !Test::More->builder->is_passing;
}

sub pub { Insite::WS->publish($port, @_) }

sub client {
    my (%o) = @_;
    my $ws = Insite::WS->connect($port, %o);
    die "handshake: " . $ws->status . "\n" unless $ws->status == 101;
    return $ws;
}

# the next text frame, or undef
sub next_msg { $_[0]->recv_json(timeout => $_[1] // 3) }

# nothing but pings arrives within $secs
sub silent {
    my ($ws, $secs) = @_;
    my $m = $ws->recv_json(timeout => $secs // 0.7);
    diag 'unexpected: ' . $JSON->encode($m) if $m;
    return !$m;
}

# after an error the connection still works
sub still_served {
    my ($ws, $name) = @_;
    $ws->send_json({ op => 'ping', id => "alive-$name" });
    is_deeply(next_msg($ws), { type => 'pong', id => "alive-$name" },
              "$name: the connection stays and is served");
}

my $errors_sent = 0;
sub error_ok {
    my ($m, $code, $id, $name) = @_;
    $errors_sent++;
    is($m && $m->{type}, 'error', "$name: an error frame");
    is($m && $m->{code}, $code, "$name: code $code");
    ok($m && defined $m->{message} && length $m->{message}, "$name: a message");
    if (defined $id) {
        is($m && $m->{id}, $id, "$name: id echoed");
    } else {
        ok($m && !exists $m->{id}, "$name: no id when the request had none");
    }
    my %keys = map { $_ => 1 } keys %{ $m // {} };
    delete @keys{qw(type code message id)};
    is(join(',', sort keys %keys), '', "$name: no other fields");
}

my $ws = client();

# --- errors: the connection stays ---------------------------------------------------

$ws->send_text('this is not json');
error_ok(next_msg($ws), 'bad_json', undef, 'not JSON');
still_served($ws, 'not JSON');

$ws->send_text('{"op":"ping",');
error_ok(next_msg($ws), 'bad_json', undef, 'truncated JSON');

$ws->send_text('[1,2,3]');
error_ok(next_msg($ws), 'bad_json', undef, 'a JSON array');

$ws->send_text('"subscribe"');
error_ok(next_msg($ws), 'bad_json', undef, 'a JSON string');

$ws->send_text('');
error_ok(next_msg($ws), 'bad_json', undef, 'an empty message');

$ws->send_json({ op => 'publish', id => 'u1', channels => ['a'] });
error_ok(next_msg($ws), 'unknown_op', 'u1', 'unknown op');
still_served($ws, 'unknown op');

$ws->send_json({ op => 'Subscribe', id => 'u2', channels => ['a'] });
error_ok(next_msg($ws), 'unknown_op', 'u2', 'op names are case-sensitive');

$ws->send_json({ id => 'u3', channels => ['a'] });
error_ok(next_msg($ws), 'bad_request', 'u3', 'no op');

$ws->send_json({ op => 'subscribe', id => 'u4' });
error_ok(next_msg($ws), 'bad_request', 'u4', 'subscribe without channels');

$ws->send_json({ op => 'subscribe', id => 'u5', channels => [] });
error_ok(next_msg($ws), 'bad_request', 'u5', 'subscribe with no channel');

$ws->send_json({ op => 'subscribe', id => 'u6', channels => 'stock_updates:A' });
error_ok(next_msg($ws), 'bad_request', 'u6', 'channels as a string');

$ws->send_json({ op => 'subscribe', id => 'u7', channels => ['x'], since => [1] });
error_ok(next_msg($ws), 'bad_request', 'u7', 'since as an array');

$ws->send_json({ op => 'subscribe', id => 'u8', channels => ['x'], since => { x => -1 } });
error_ok(next_msg($ws), 'bad_request', 'u8', 'since -1');

$ws->send_json({ op => 'subscribe', id => 'u9', channels => ['x'], since => { x => 'abc' } });
error_ok(next_msg($ws), 'bad_request', 'u9', 'since a string');

$ws->send_json({ op => 'ping', id => { a => 1 } });
error_ok(next_msg($ws), 'bad_request', undef, 'id as an object');

for my $bad ('bad channel', 'a/b', '', 'x' x 129, "caf\x{e9}", 'a*', 'ch,2') {
    $ws->send_json({ op => 'subscribe', id => 'bc', channels => ['ok:1', $bad] });
    my $shown = length $bad > 20 ? length($bad) . ' chars' : "'$bad'";
    error_ok(next_msg($ws), 'bad_channel', 'bc', "bad channel $shown");
}
$ws->send_json({ op => 'subscribe', id => 'bc2', channels => [42] });
error_ok(next_msg($ws), 'bad_channel', 'bc2', 'a channel name that is a number');
still_served($ws, 'bad channels');

# the bad subscribes above subscribed nothing, not even their good channels
pub('ok:1', { n => 1 });
ok(silent($ws), 'a subscribe with a bad channel subscribed none of its channels');

# the longest name and every allowed character
my $long = 'A' x 128;
my $chars = 'az.AZ_09:-';
$ws->send_json({ op => 'subscribe', id => 7, channels => [$long, $chars] });
my $m = next_msg($ws);
is($m && $m->{type}, 'subscribed', '128 characters and [A-Za-z0-9_.:-] are valid');
is($m && $m->{id}, 7, 'an integer id is echoed as an integer');
like($m && $JSON->encode($m), qr/"id":7[,}]/, '... as a JSON number');
ok($m && exists $m->{channels}{$long} && exists $m->{channels}{$chars},
   'subscribed lists both channels');

# --- id echo on every reply -----------------------------------------------------------

$ws->send_json({ op => 'ping', id => 'p1' });
is_deeply(next_msg($ws), { type => 'pong', id => 'p1' }, 'pong echoes id');
$ws->send_json({ op => 'ping' });
is_deeply(next_msg($ws), { type => 'pong' }, 'pong without id has no id');
$ws->send_json({ op => 'ping', id => "r\x{e9}q \"1\"" });
is_deeply(next_msg($ws), { type => 'pong', id => "r\x{e9}q \"1\"" },
          'a string id with quotes and non-ASCII is echoed exactly');
$ws->send_json({ op => 'ping', id => 0 });
is_deeply(next_msg($ws), { type => 'pong', id => 0 }, 'id 0 is echoed');

$ws->send_json({ op => 'subscribe', id => 's1', channels => ['stock_updates:ID'] });
$m = next_msg($ws);
is($m->{type}, 'subscribed', 'subscribed');
is($m->{id}, 's1', 'subscribed echoes id');
is(join(',', sort keys %$m), 'channels,id,type', 'subscribed: type, id, channels');
my $pos = $m->{channels}{'stock_updates:ID'};
is($pos && $pos->{seq}, 0, 'a channel never published: seq 0');
is($pos && $pos->{epoch}, '', '... of the empty epoch: a subscribe writes nothing to Redis');

$ws->send_json({ op => 'subscribe', channels => ['stock_updates:ID2'] });
$m = next_msg($ws);
ok($m->{type} eq 'subscribed' && !exists $m->{id}, 'subscribed without id has no id');

$ws->send_json({ op => 'unsubscribe', id => 'x1', channels => ['stock_updates:ID'] });
$m = next_msg($ws);
is_deeply($m, { type => 'unsubscribed', id => 'x1', channels => ['stock_updates:ID'] },
          'unsubscribed echoes id and lists the channel');
$ws->send_json({ op => 'unsubscribe', channels => ['stock_updates:ID2', 'never:subscribed'] });
$m = next_msg($ws);
is($m->{type}, 'unsubscribed', 'unsubscribe of a channel not subscribed is fine');
ok(!exists $m->{id}, 'unsubscribed without id has no id');
$ws->send_json({ op => 'unsubscribe', id => 'x2' });
error_ok(next_msg($ws), 'bad_request', 'x2', 'unsubscribe without channels');
$ws->close;

# --- the published envelope ------------------------------------------------------------

my $ch = 'stock_updates:AAPL';
$ws = client();
$m = $ws->subscribe([$ch], id => 'env');
my $epoch = $m->{channels}{$ch}{epoch};
is($m->{channels}{$ch}{seq}, 0, "$ch: seq 0 before any publish");

my $res = pub($ch, '{"type":"stock_update","data":{"price":187.43,"volume":1200}}');
is($res->{status}, 201, 'publish: 201');
is($epoch, '', "$ch: no epoch before the first publish");
like($res->{json}{epoch}, qr/^[0-9a-f]{16}$/, 'the first publish makes the epoch');
$epoch = $res->{json}{epoch};
is_deeply($res->{json}, { channel => $ch, seq => 1, epoch => $epoch, duplicate => JSON::PP::false },
          'publish answer: channel, seq 1, epoch, duplicate false');
my $f = $ws->recv_frame(timeout => 3);
$f = $ws->recv_frame(timeout => 3) while $f && $f->{opcode} == 9;
ok($f && $f->{opcode} == 1 && $f->{fin}, 'delivered as one text frame');
my $raw = $f ? $f->{payload} : '';
like($raw, qr/^\{"type":"stock_update","channel":"stock_updates:AAPL","seq":1,"ts":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z","data":\{"price":187\.43,"volume":1200\}\}$/,
     'the envelope, exactly: type, channel, seq, ts (UTC, ms), data as written');
$m = eval { $JSON->decode($raw) } // {};
is(join(',', sort keys %$m), 'channel,data,seq,ts,type', 'envelope fields: exactly five');
my ($y, $mo, $d, $h, $mi, $s) = ($m->{ts} // '') =~ /^(\d+)-(\d+)-(\d+)T(\d+):(\d+):(\d+)/;
ok(defined $y && abs(POSIX::mktime($s, $mi, $h, $d, $mo - 1, $y - 1900) - POSIX::mktime(gmtime)) < 60,
   'ts is now, in UTC');

# seq + 1 per publish, whatever the worker
my @seqs;
for my $i (2 .. 11) {
    $res = pub($ch, { type => 'stock_update', data => { i => $i } });
    push @seqs, $res->{json}{seq};
}
is_deeply(\@seqs, [2 .. 11], 'seq increases by exactly 1 per publish');
my @got = $ws->collect(count => 10, timeout => 5);
is_deeply([map { $_->{seq} } @got], [2 .. 11], 'the subscriber gets 2..11 in order');
is_deeply([map { $_->{data}{i} } @got], [2 .. 11], '... each with its data');

# defaults: type "message", data = the whole body
$res = pub($ch, '{"price":1.5,"note":"no type, no data"}');
is($res->{status}, 201, 'a body without type and data: 201');
$m = next_msg($ws);
is($m->{type}, 'message', 'default type: "message"');
is_deeply($m->{data}, { price => 1.5, note => 'no type, no data' }, 'default data: the whole body');

$res = pub($ch, '{"type":"alert_triggered","level":3}');
$m = next_msg($ws);
is($m->{type}, 'alert_triggered', 'type without data: the type is used');
is_deeply($m->{data}, { type => 'alert_triggered', level => 3 },
          '... and data is the whole body');

$res = pub($ch, '{"data":[1,"two",null,true]}');
$m = next_msg($ws);
is($m->{type}, 'message', 'data without type: type "message"');
is_deeply($m->{data}, [1, 'two', undef, JSON::PP::true], '... data may be any JSON value');

$res = pub($ch, '{"type":"t","data":"caf\u00e9 \u20ac"}');
$m = next_msg($ws);
is($m->{data}, "caf\x{e9} \x{20ac}", 'non-ASCII data arrives as the same text');

# data is the publisher's JSON: numbers are not rounded, big integers pass
$res = pub($ch, '{"type":"t","data":{"x":0.30000000000000004,"pi":3.141592653589793,"tiny":1.2345678901234567e-7}}');
is($res->{status}, 201, 'data with full-precision doubles: 201');
# compared as doubles, bit for bit (Perl prints numbers with 15 digits)
$f = $ws->recv_frame(timeout => 3);
$f = $ws->recv_frame(timeout => 3) while $f && $f->{opcode} == 9;
$raw = $f ? $f->{payload} : '';
$m = eval { $JSON->decode($raw) } // {};
my %want = (x => '0.30000000000000004', pi => '3.141592653589793', tiny => '1.2345678901234567e-7');
my @changed = grep { pack('d', $m->{data}{$_} // 0) ne pack('d', $want{$_}) } sort keys %want;
is("@changed", '', 'data numbers arrive as the same doubles (not rounded to 15 digits)')
    or diag "published {\"x\":$want{x},\"pi\":$want{pi},\"tiny\":$want{tiny}}, delivered: "
          . (($raw =~ /"data":(\{.*\})\}$/)[0] // $raw);
$res = pub($ch, '{"type":"t","data":{"volume":12345678901234567890}}');
is($res->{status}, 201, 'a JSON object whose data holds an integer over 64 bits: 201')
    or diag $res->{body};
$m = next_msg($ws) if ($res->{status} // 0) == 201;

# data is taken as written, whitespace and escapes included; still valid JSON
$res = pub($ch, qq({ "type" : "t" ,\n "data" : {\n "a" : [1, 2] , "s" : "x\\ny \\u00e9\\ud83d\\ude00" } \n}));
is($res->{status}, 201, 'a body with whitespace, newlines and escapes: 201');
$f = $ws->recv_frame(timeout => 3);
$f = $ws->recv_frame(timeout => 3) while $f && $f->{opcode} == 9;
$m = $f && eval { $JSON->decode($f->{payload}) };
ok($m, 'the envelope is valid JSON') or diag $f && $f->{payload};
is_deeply($m && $m->{data}, { a => [1, 2], s => "x\ny \x{e9}\x{1f600}" }, '... with the data published');

$res = pub("stock_updates%3AAAPL", '{"type":"t","data":1}');
is($res->{status}, 201, 'a percent-encoded channel name is decoded');
is(next_msg($ws)->{channel}, $ch, '... and delivered on that channel');

# --- idempotency -------------------------------------------------------------------------

$res = pub($ch, '{"type":"t","data":{"k":1}}', key => 'order-1');
is($res->{status}, 201, 'first publish with Idempotency-Key: 201');
my $kseq = $res->{json}{seq};
$res = pub($ch, '{"type":"t","data":{"k":1}}', key => 'order-1');
is($res->{status}, 200, 'the retry: 200');
is($res->{json}{seq}, $kseq, 'the retry reports the first seq');
ok($res->{json}{duplicate}, 'the retry says duplicate: true');
$res = pub($ch, '{"type":"t","data":{"k":1}}', key => 'order-1');
is($res->{status}, 200, 'a second retry: 200 again');
$m = next_msg($ws);
is($m->{seq}, $kseq, 'the message is delivered once');
ok(silent($ws), '... and only once');
$res = pub($ch, '{"type":"t","data":{"k":2}}', key => 'order-2');
is($res->{json}{seq}, $kseq + 1, 'another key: the next seq');
$res = pub('stock_updates:MSFT', '{"type":"t","data":{"k":1}}', key => 'order-1');
is($res->{status}, 201, 'the same key on another channel is another message');
is(next_msg($ws)->{seq}, $kseq + 1, 'no seq was skipped by the retries');

# --- publish errors ------------------------------------------------------------------------

sub pub_error {
    my ($res, $status, $name) = @_;
    is($res->{status}, $status, "$name: $status");
    ok(ref $res->{json} && length($res->{json}{error} // '') && length($res->{json}{message} // ''),
       "$name: a JSON reason") or diag $res->{body};
}
pub_error(pub('bad%20channel', '{"a":1}'), 400, 'publish to a bad channel');
pub_error(pub('a%2Fb', '{"a":1}'), 400, 'publish to a channel with a slash');
pub_error(pub('x' x 129, '{"a":1}'), 400, 'publish to a 129-character channel');
$res = http_request($port, 'POST', '/pub', body => '{"a":1}');
$res->{json} = eval { $JSON->decode($res->{body}) };
pub_error($res, 400, 'publish without ?channel');
pub_error(pub($ch, '[1,2]'), 400, 'a JSON array body');
pub_error(pub($ch, '"text"'), 400, 'a JSON string body');
pub_error(pub($ch, 'not json'), 400, 'a body that is not JSON');
{
    my $r = pub($ch, '{"data":1e400}');
    is($r->{status}, 400, 'a number out of range: 400');
    like($r->{json}{message} // '', qr/not valid JSON: real number overflow/,
         '... and the message says why (jansson\'s reason)');
}
pub_error(pub($ch, ''), 400, 'an empty body');
pub_error(pub($ch, '{"a":1,"a":2}'), 400, 'duplicate keys');
pub_error(pub($ch, '{"type":5}'), 400, 'a type that is not a string');
pub_error(pub($ch, '{"type":"has space"}'), 400, 'a type with a space');
pub_error(pub($ch, '{"type":"t"}', key => 'bad key!'), 400, 'a bad Idempotency-Key');
pub_error(pub($ch, '{"data":"' . ('x' x 1100) . '"}'), 413, 'a body over insite_ws_max_message_size');
{
    # the same, sent in chunks: the size is known only once read
    my $body = '{"data":"' . ('y' x 1100) . '"}';
    my $chunked = sprintf("%x\r\n%s\r\n0\r\n\r\n", length $body, $body);
    my $r = http_request($port, 'POST', "/pub?channel=$ch", body => $chunked,
                         headers => ['Transfer-Encoding' => 'chunked']);
    is($r->{status}, 413, 'a chunked body over the size: 413');
    like($r->{body} // '', qr/^\{"error":"too_large","message":"[^"]+"\}\n\z/,
         '... with one JSON reason and nothing after it');
    my @alerts = grep { /\[alert\]/ } split /\n/, $ngx->error_log;
    is(scalar @alerts, 0, 'a chunked body over the size: no [alert] (one response only)')
        or diag join "\n", @alerts;
}
$res = http_request($port, 'GET', "/pub?channel=$ch");
is($res->{status}, 405, 'GET on the publish location: 405');
is($res->{headers}{allow}, 'POST', '... with Allow: POST');
$res = http_request($port, 'PUT', "/pub?channel=$ch", body => '{}');
is($res->{status}, 405, 'PUT: 405');
ok(silent($ws), 'no refused publish reached the subscriber');
$res = pub($ch, '{"type":"t","data":"after errors"}');
is($res->{json}{seq}, $kseq + 2, 'refused publishes took no seq');
is(next_msg($ws)->{seq}, $kseq + 2, '... and the next message has it');

# --- unsubscribe stops delivery -----------------------------------------------------------

my $other = client();
$other->subscribe([$ch]);
$ws->send_json({ op => 'unsubscribe', id => 'u', channels => [$ch] });
is(next_msg($ws)->{type}, 'unsubscribed', 'unsubscribed');
pub($ch, '{"type":"t","data":"after unsubscribe"}');
is(next_msg($other)->{data}, 'after unsubscribe', 'another subscriber still gets the channel');
ok(silent($ws, 1), 'the unsubscribed client gets nothing more');
$ws->send_json({ op => 'subscribe', id => 'again', channels => [$ch] });
$m = next_msg($ws);
is($m->{type}, 'subscribed', 'subscribe again after unsubscribe');
pub($ch, '{"type":"t","data":"back"}');
is(next_msg($ws)->{data}, 'back', '... delivery resumes');
$other->close;

# subscribing twice to the same channel: one delivery per message
$ws->send_json({ op => 'subscribe', id => 'twice', channels => [$ch, $ch] });
$m = next_msg($ws);
is($m->{type}, 'subscribed', 'subscribe to a channel already subscribed (named twice): subscribed');
pub($ch, '{"type":"t","data":"once"}');
is(next_msg($ws)->{data}, 'once', 'the message comes');
ok(silent($ws), '... once');
$ws->close;

# --- requests pipelined before the first is answered ---------------------------------------

{
    # two subscribes of one new channel in one packet: each gets its answer
    my $p = client();
    $p->write_raw(Insite::WS::frame(1, '{"op":"subscribe","id":"d1","channels":["pipe:a"]}')
                . Insite::WS::frame(1, '{"op":"subscribe","id":"d2","channels":["pipe:a"]}'));
    my @ids = map { $_->{type} eq 'subscribed' ? $_->{id} : "$_->{type}" } $p->collect(count => 2, timeout => 3);
    is_deeply(\@ids, ['d1', 'd2'], 'two subscribes of a new channel in one packet: subscribed d1, subscribed d2');
    pub('pipe:a', '{"data":"pa"}');
    my @got = grep { ($_->{channel} // '') eq 'pipe:a' } $p->collect(timeout => 2);
    is(scalar @got, 1, '... and each message once');
    $p->close;

    # subscribe [b, c] then unsubscribe [b] before the subscribe completes
    $p = client();
    $p->write_raw(Insite::WS::frame(1, '{"op":"subscribe","id":"s","channels":["pipe:b","pipe:c"]}')
                . Insite::WS::frame(1, '{"op":"unsubscribe","id":"u","channels":["pipe:b"]}'));
    my %by_id = map { ($_->{id} // '') => $_ } $p->collect(count => 2, timeout => 3);
    is($by_id{u} && $by_id{u}{type}, 'unsubscribed', 'subscribe + unsubscribe in one packet: unsubscribed');
    is($by_id{s} && $by_id{s}{type}, 'subscribed', '... and the subscribe is answered too')
        or diag 'answers: ' . $JSON->encode([values %by_id]);
    pub('pipe:c', '{"data":"to c"}');
    pub('pipe:b', '{"data":"to b"}');
    my @data = map { $_->{data} } grep { defined $_->{seq} } $p->collect(timeout => 1.5);
    is_deeply(\@data, ['to c'], '... pipe:c delivers, pipe:b (unsubscribed) does not');
    still_served($p, 'pipelined subscribe + unsubscribe');
    $p->close;

    # a subscribe of [d], then of [e, d] at once: both answered
    $p = client();
    $p->write_raw(Insite::WS::frame(1, '{"op":"subscribe","id":"x1","channels":["pipe:d"]}')
                . Insite::WS::frame(1, '{"op":"subscribe","id":"x2","channels":["pipe:e","pipe:d"]}'));
    @ids = map { $_->{id} // $_->{type} } $p->collect(count => 2, timeout => 3);
    is_deeply([sort @ids], ['x1', 'x2'], 'subscribe [d] and [e, d] in one packet: both answered');
    $p->close;
}

# --- insite_ws_max_channels 3 --------------------------------------------------------------

$ws = client(path => '/ws3');
$m = $ws->subscribe(['lim:a', 'lim:b'], id => 'l1');
is($m->{type}, 'subscribed', 'limit 3: 2 channels');
$ws->send_json({ op => 'subscribe', id => 'l2', channels => ['lim:c', 'lim:d'] });
error_ok(next_msg($ws), 'too_many_channels', 'l2', 'limit 3: 2 more would be 4');
pub('lim:c', '{"data":"c"}');
pub('lim:d', '{"data":"d"}');
ok(silent($ws), 'the refused subscribe added none of its channels');
$ws->send_json({ op => 'subscribe', id => 'l3', channels => ['lim:a', 'lim:b', 'lim:c'] });
$m = next_msg($ws);
is($m->{type}, 'subscribed', 'limit 3: 2 subscribed + 1 new (and 2 already held) is fine');
is(join(',', sort keys %{ $m->{channels} // {} }), 'lim:a,lim:b,lim:c',
   '... subscribed lists all three');
$ws->send_json({ op => 'subscribe', id => 'l4', channels => ['lim:d'] });
error_ok(next_msg($ws), 'too_many_channels', 'l4', 'limit 3: a 4th');
$ws->send_json({ op => 'unsubscribe', channels => ['lim:a'] });
next_msg($ws);
$ws->send_json({ op => 'subscribe', id => 'l5', channels => ['lim:d', 'lim:d'] });
is(next_msg($ws)->{type}, 'subscribed', 'after an unsubscribe there is room again (a name twice counts once)');
pub('lim:d', '{"data":"d2"}');
is(next_msg($ws)->{data}, 'd2', 'lim:d delivers');
still_served($ws, 'channel limit');
$ws->close;

# the limit is per connection
my @conns = map { client(path => '/ws3') } 1 .. 2;
is($_->subscribe(['lim:a', 'lim:b', 'lim:c'])->{type}, 'subscribed',
   'the limit counts per connection') for @conns;
$_->close for @conns;

# --- private channels ------------------------------------------------------------------------

my $u42 = client(path => '/ws-user', headers => ['X-User' => '42']);
$m = $u42->subscribe(['alert:42'], id => 'mine');
is($m->{type}, 'subscribed', 'user 42 may subscribe to alert:42');
for my $c ('alert:43', 'alert:4', 'alert:420', 'alert:', 'alert:42:x') {
    $u42->send_json({ op => 'subscribe', id => 'theirs', channels => [$c] });
    error_ok(next_msg($u42), 'forbidden', 'theirs', "user 42, $c");
}
$u42->send_json({ op => 'subscribe', id => 'mixed', channels => ['stock_updates:PRIV', 'alert:43'] });
error_ok(next_msg($u42), 'forbidden', 'mixed', 'a public and a forbidden channel');
still_served($u42, 'forbidden');
pub('stock_updates:PRIV', '{"data":"pub"}');
pub('alert:43', '{"data":"for 43"}');
ok(silent($u42), 'the forbidden subscribe added none of its channels');
pub('alert:42', '{"type":"alert_triggered","data":{"symbol":"AAPL"}}');
$m = next_msg($u42);
is($m->{channel}, 'alert:42', 'user 42 gets alert:42');
is($m->{type}, 'alert_triggered', '... with its type');

my $anon = client(path => '/ws-user');
$anon->send_json({ op => 'subscribe', id => 'anon', channels => ['alert:42'] });
error_ok(next_msg($anon), 'forbidden', 'anon', 'no user: alert:42');
$anon->send_json({ op => 'subscribe', id => 'anon2', channels => ['alert:'] });
error_ok(next_msg($anon), 'forbidden', 'anon2', 'no user: alert: (empty id)');
is($anon->subscribe(['stock_updates:PRIV'])->{type}, 'subscribed', 'no user: public channels are fine');
my $u43 = client(path => '/ws-user', headers => ['X-User' => '43']);
is($u43->subscribe(['alert:43'])->{type}, 'subscribed', 'user 43: alert:43');
pub('alert:43', '{"data":"only 43"}');
is(next_msg($u43)->{data}, 'only 43', 'user 43 gets its alert');
ok(silent($u42, 0.5), 'user 42 does not');
$_->close for $u42, $anon, $u43;

# on a location without insite_ws_private_prefix, alert: is an ordinary prefix
$ws = client();
is($ws->subscribe(['alert:42'])->{type}, 'subscribed',
   'without insite_ws_private_prefix nothing is private');
$ws->close;

# --- churn: clients that subscribe, unsubscribe and vanish mid-request -------------------

{
    my %workers_before = map { $_ => 1 } $ngx->workers;
    my @chs = map { "churn:$_" } 1 .. 8;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        for my $i (1 .. 300) {
            Insite::WS->publish($port, $chs[$i % 8], { type => 'tick', data => $i });
            sleep 0.003;
        }
        POSIX::_exit(0);
    }
    srand(20261126);
    my @open;
    my $F = \&Insite::WS::frame;
    for my $it (1 .. 200) {
        my $c = Insite::WS->connect($port);
        my @cs = map { $chs[int rand 8] } 0 .. int rand 5;
        my $raw = $F->(1, $JSON->encode({ op => 'subscribe', id => "c$it", channels => \@cs,
            (rand() < 0.5 ? (since => { map { $_ => int rand 40 } @cs }) : ()) }));
        $raw .= $F->(1, $JSON->encode({ op => 'unsubscribe', channels => [$cs[0]] })) if rand() < 0.3;
        $raw .= $F->(1, $JSON->encode({ op => 'subscribe', channels => [$cs[-1], $chs[int rand 8]] }))
            if rand() < 0.3;
        $c->write_raw($raw);
        my $p = rand();
        if ($p < 0.3) { $c->close }
        elsif ($p < 0.5) { sleep 0.003; $c->close }
        else { push @open, $c }
        if (@open > 20) { splice(@open, int rand @open, 1)->close }
    }
    $_->close for @open;
    waitpid $pid, 0;
    my %workers_after = map { $_ => 1 } $ngx->workers;
    is_deeply(\%workers_after, \%workers_before, 'churn: no worker died');
    my ($st, $deadline) = (undef, time + 6);
    while (time < $deadline) {
        $st = $JSON->decode($ngx->get('/status')->{body});
        last if !$st->{connections}{now} && !$st->{subscriptions} && !$st->{channels};
        sleep 0.1;
    }
    is($st->{connections}{now}, 0, 'churn: every connection released');
    is($st->{subscriptions}, 0, 'churn: every subscription released');
    is($st->{channels}, 0, 'churn: every channel released');
    my $c = client();
    my $s = $c->subscribe([@chs], since => { map { $_ => 0 } @chs });
    is($s && $s->{type}, 'subscribed', 'after the churn a client subscribes to the 8 channels');
    my @got = grep { defined $_->{seq} } $c->collect(count => 300, timeout => 8);
    my %per;
    push @{ $per{$_->{channel}} }, $_->{seq} for @got;
    is(scalar @got, 300, 'and replays the 300 messages');
    is(join(' ', map { Insite::WS->seq_problem($per{$_} // [], 1) || 'ok' } @chs),
       join(' ', ('ok') x 8), 'each channel gap-free from 1');
    $c->close;
}

my $st = $JSON->decode($ngx->get('/status')->{body});
is($st->{client_errors}, $errors_sent, "status: every error frame counted as a client error");
cmp_ok($st->{messages}{published}, '>=', 20, 'status: publishes counted');

$ngx->stop;
$ngx->check_log;

done_testing;
