# ngx_http_insite_ws_module: the opening handshake (RFC 6455 4.2) and what
# is refused before the 101: bad keys, versions, methods, plain HTTP, Origins,
# the connection limit shared by both workers, and configuration errors.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Time::HiRes qw(time sleep);
use JSON::PP ();
use Insite::Services qw(start_redis http_request);
use Insite::Nginx;
use Insite::WS;

my $JSON = JSON::PP->new;
my $redis = start_redis();
my $rport = $redis->port;

my $ngx = Insite::Nginx->new(
    http   => "    insite_redis 127.0.0.1:$rport;\n"
            . "    insite_ws_shutdown_spread 100ms;",
    server => "        location /ws { insite_ws; }\n"
            . "        location /ws-origin {\n"
            . "            insite_ws;\n"
            . "            insite_ws_allowed_origins https://app.insitechart.example http://localhost:3000;\n"
            . "        }\n"
            . "        location /status { insite_ws_status; }",
);
my $port = $ngx->port;
ok(Insite::WS->wait_ready($port), 'Redis connected in both workers');

# a raw request to an insite_ws location, headers as a list of pairs
sub upgrade_request {
    my (%o) = @_;
    my @h = $o{headers} ? @{ $o{headers} } : (
        'Upgrade' => 'websocket', 'Connection' => 'Upgrade',
        'Sec-WebSocket-Key' => 'dGhlIHNhbXBsZSBub25jZQ==',
        'Sec-WebSocket-Version' => '13');
    return http_request($port, $o{method} // 'GET', $o{path} // '/ws',
                        headers => \@h, body => $o{body}, timeout => 5);
}

sub json_error_ok {
    my ($res, $status, $code, $name) = @_;
    is($res->{status}, $status, "$name: $status");
    like($res->{headers}{'content-type'} // '', qr{^application/json},
         "$name: JSON body");
    my $j = eval { $JSON->decode($res->{body} // '') };
    is(ref $j && $j->{error}, $code, "$name: error code $code")
        or diag "body: " . ($res->{body} // 'none');
    ok(ref $j && length($j->{message} // ''), "$name: a message says why");
}

# --- the RFC 6455 sample handshake: exact accept key -------------------------

{
    my $ws = Insite::WS->connect($port, key => 'dGhlIHNhbXBsZSBub25jZQ==');
    is($ws->status, 101, 'RFC sample key: 101');
    like($ws->head, qr{^HTTP/1\.1 101 Switching Protocols\r\n}, '101 status line');
    like($ws->head, qr{^Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK\+xOo=\r$}m,
         'Sec-WebSocket-Accept is exactly the RFC 6455 sample value');
    like($ws->head, qr{^Upgrade: websocket\r$}mi, 'Upgrade: websocket');
    like($ws->head, qr{^Connection: upgrade\r$}mi, 'Connection: upgrade');
    unlike($ws->head, qr{^Content-Length:}mi, 'no Content-Length on the 101');
    unlike($ws->head, qr{^Sec-WebSocket-Extensions:}mi,
           'no extension negotiated');
    $ws->send_json({ op => 'ping', id => 'hs1' });
    is_deeply($ws->recv_json(timeout => 3), { type => 'pong', id => 'hs1' },
              'the connection speaks the protocol after the 101');
    $ws->send_close(1000);
    my ($code) = $ws->expect_close(timeout => 3);
    is($code, 1000, 'clean close');
}

# Firefox sends "Connection: keep-alive, Upgrade"; header names and the
# Upgrade token are case-insensitive
{
    my $res_ws = Insite::WS->connect($port, no_handshake => 1);
    $res_ws->write_raw("GET /ws HTTP/1.1\r\nHost: x\r\nupgrade: WebSocket\r\n"
        . "connection: keep-alive, Upgrade\r\n"
        . "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        . "sec-websocket-version: 13\r\n\r\n");
    my $head = $res_ws->read_until("\r\n\r\n", 3) // '';
    like($head, qr{^HTTP/1\.1 101 }, 'Connection: keep-alive, Upgrade and lower-case names: 101');
    like($head, qr{^Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK\+xOo=\r$}m,
         '... with the right accept key');
    $res_ws->close;
}

# a frame sent in the same packet as the handshake is not lost
{
    my $ws = Insite::WS->connect($port, after_handshake =>
        Insite::WS::frame(1, '{"op":"ping","id":"early"}'));
    is($ws->status, 101, 'handshake with a frame right behind it: 101');
    is_deeply($ws->recv_json(timeout => 3), { type => 'pong', id => 'early' },
              'the frame behind the handshake is answered');
    $ws->close;
}

# --- refused before the 101 --------------------------------------------------

json_error_ok(upgrade_request(headers => [
    'Upgrade' => 'websocket', 'Connection' => 'Upgrade',
    'Sec-WebSocket-Version' => '13']), 400, 'bad_request', 'missing key');

for my $key ('abc', 'dGhlIHNhbXBsZSBub25j', 'dGhlIHNhbXBsZSBub25jZQ',
             '!!!!!!!!!!!!!!!!!!!!!!==', 'dGhlIHNhbXBsZSBub25jZSEh')
{
    json_error_ok(upgrade_request(headers => [
        'Upgrade' => 'websocket', 'Connection' => 'Upgrade',
        'Sec-WebSocket-Key' => $key, 'Sec-WebSocket-Version' => '13']),
        400, 'bad_request', "invalid key '$key'");
}

for my $v ('8', '14', '1.3', '') {
    my $res = upgrade_request(headers => [
        'Upgrade' => 'websocket', 'Connection' => 'Upgrade',
        'Sec-WebSocket-Key' => 'dGhlIHNhbXBsZSBub25jZQ==',
        length $v ? ('Sec-WebSocket-Version' => $v) : ()]);
    my $name = length $v ? "version $v" : 'no version';
    json_error_ok($res, 426, 'upgrade_required', $name);
    is($res->{headers}{'sec-websocket-version'}, '13',
       "$name: Sec-WebSocket-Version: 13 in the answer");
}

for my $m ('POST', 'PUT', 'DELETE') {
    my $res = upgrade_request(method => $m, body => ($m eq 'DELETE' ? undef : '{}'));
    json_error_ok($res, 405, 'bad_request', "$m");
    is($res->{headers}{allow}, 'GET', "$m: Allow: GET");
}

{
    my $res = http_request($port, 'GET', '/ws');
    json_error_ok($res, 426, 'upgrade_required', 'plain GET without Upgrade');
    like($res->{headers}{upgrade} // '', qr/^websocket$/i,
         'plain GET: the 426 names the protocol in Upgrade');

    $res = upgrade_request(headers => [
        'Upgrade' => 'h2c', 'Connection' => 'Upgrade',
        'Sec-WebSocket-Key' => 'dGhlIHNhbXBsZSBub25jZQ==',
        'Sec-WebSocket-Version' => '13']);
    is($res->{status}, 426, 'Upgrade: h2c: 426');

    $res = upgrade_request(headers => [
        'Upgrade' => 'websocket', 'Connection' => 'keep-alive',
        'Sec-WebSocket-Key' => 'dGhlIHNhbXBsZSBub25jZQ==',
        'Sec-WebSocket-Version' => '13']);
    is($res->{status}, 426, 'Upgrade without "Connection: Upgrade": 426');
}

{
    my $ws = Insite::WS->connect($port, no_handshake => 1);
    $ws->write_raw("GET /ws HTTP/1.0\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        . "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
    my $head = $ws->read_until("\r\n\r\n", 3) // '';
    like($head, qr{^HTTP/1\.[01] 400 }, 'HTTP/1.0 upgrade: 400');
    $ws->close;
}

# --- Origins -------------------------------------------------------------------

for my $o ('https://evil.example', 'https://app.insitechart.example.evil.example',
           'http://app.insitechart.example', 'null')
{
    my $ws = Insite::WS->connect($port, path => '/ws-origin',
                                 headers => [Origin => $o]);
    is($ws->status, 403, "Origin $o: 403");
    my $j = eval { $JSON->decode($ws->body // '') };
    is(ref $j && $j->{error}, 'forbidden', "Origin $o: JSON error forbidden")
        or diag $ws->head . ($ws->body // '');
    $ws->close;
}
for my $o ('https://app.insitechart.example', 'http://localhost:3000') {
    my $ws = Insite::WS->connect($port, path => '/ws-origin',
                                 headers => [Origin => $o]);
    is($ws->status, 101, "listed Origin $o: 101");
    $ws->close;
}
{
    my $ws = Insite::WS->connect($port, path => '/ws',
                                 headers => [Origin => 'https://evil.example']);
    is($ws->status, 101, 'no insite_ws_allowed_origins: any Origin is accepted');
    $ws->close;
}

my $st = $JSON->decode($ngx->get('/status')->{body});
is($st->{connections}{refused}, 0,
   'refusals for bad requests are not counted as connection-limit refusals');

$ngx->stop;
$ngx->check_log('handshake server: no alerts');

# --- insite_ws_max_connections across both workers ----------------------------

my $lim = Insite::Nginx->new(
    http   => "    insite_redis 127.0.0.1:$rport;\n"
            . "    insite_ws_max_connections 2;\n"
            . "    insite_ws_shutdown_spread 100ms;",
    server => "        location /ws { insite_ws; }\n"
            . "        location /status { insite_ws_status; }\n"
            . "        location = /metrics { insite_metrics; }",
);
my $lport = $lim->port;
ok(Insite::WS->wait_ready($lport), 'limit server: Redis connected');
my %workers = map { $_ => 1 } $lim->workers;
is(scalar keys %workers, 2, 'two workers');

sub status_of { $JSON->decode(http_request($_[0], 'GET', '/status')->{body}) }

sub wait_conns {
    my ($want) = @_;
    my $deadline = time + 5;
    my $now;
    while (time < $deadline) {
        $now = status_of($lport)->{connections}{now};
        return 1 if $now == $want;
        sleep 0.05;
    }
    diag "connections now: $now, want $want";
    return 0;
}

sub bye {
    my ($ws) = @_;
    $ws->send_close(1000);
    $ws->expect_close(timeout => 3);
    $ws->wait_eof(3);
    $ws->close;
}

# two connections, on different workers if the kernel lets us
my $a = Insite::WS->connect($lport);
is($a->status, 101, 'first connection accepted');
my $apid = $a->server_pid;
ok($workers{$apid // 0}, 'the first connection is held by a worker')
    or diag "server pid: " . ($apid // 'unknown');
my ($b, $bpid);
for my $try (1 .. 30) {
    $b = Insite::WS->connect($lport);
    is($b->status, 101, 'second connection accepted') if $try == 1;
    last unless $b->status == 101;
    $bpid = $b->server_pid;
    last if defined $bpid && defined $apid && $bpid != $apid;
    bye($b);
    wait_conns(1);
    undef $b;
}
ok($b && $b->status == 101, 'a second connection is open');
if (defined $bpid && $bpid != $apid) {
    pass('the two connections are held by different workers');
} else {
    diag 'the kernel put every second connection on the same worker; the '
       . 'limit is still checked below';
}
ok(wait_conns(2), 'status: 2 connections now');

my %refused_by;
for my $i (1 .. 8) {
    my $c = Insite::WS->connect($lport);
    is($c->status, 503, "connection #3 (try $i): 503") or diag $c->head;
    like($c->head, qr{^Retry-After: \d+\r$}m, "try $i: Retry-After");
    my $j = eval { $JSON->decode($c->body // '') };
    ok(ref $j && $j->{error} eq 'service_unavailable' && length $j->{message},
       "try $i: JSON body says why") or diag $c->body;
    unlike($c->head, qr{^Sec-WebSocket-Accept:}m, "try $i: no accept key");
    $c->close;
}
my @refusers = $lim->error_log =~ /(\d+)#\d+: \*\d+ insite ws: connection refused/g;
$refused_by{$_}++ for @refusers;
is(scalar @refusers, 8, 'each refusal logged once');
diag 'refused by workers: ' . join(', ', map { "$_ ($refused_by{$_})" } sort keys %refused_by)
    if $ENV{TEST_VERBOSE};

$st = status_of($lport);
is($st->{connections}{refused}, 8, 'status: 8 refused');
is($st->{connections}{now}, 2, 'status: still 2 connections');
is($st->{connections}{max}, 2, 'status: max 2');
like($lim->get('/metrics')->{body}, qr/^insite_ws_connections_refused_total 8$/m,
     'metrics: refused counted');

# one goes: a new one is accepted, wherever it lands
bye($a);
ok(wait_conns(1), 'after a close: 1 connection');
my $c = Insite::WS->connect($lport);
is($c->status, 101, 'after one closed, a new connection is accepted');
my $d = Insite::WS->connect($lport);
is($d->status, 503, '... and the limit holds again');
$d->close;

# a peer that vanishes without a close frame is uncounted too
$b->close;
ok(wait_conns(1), 'a peer that went away (no close frame) is uncounted');
my $e = Insite::WS->connect($lport);
is($e->status, 101, 'its slot is reusable');
$c->close;
$e->close;
ok(wait_conns(0), 'all gone: 0 connections');
$st = status_of($lport);
cmp_ok($st->{connections}{peak}, '==', 2, 'peak stayed at 2');

$lim->stop;
$lim->check_log('limit server: no alerts');

# --- configuration errors --------------------------------------------------------

sub conf_fails {
    my ($name, %conf) = @_;
    my $n = eval { Insite::Nginx->new(%conf) };
    my $err = $@;
    if ($n) {
        $n->stop;
        fail("$name: nginx must refuse to start");
        return '';
    }
    pass("$name: nginx refuses to start");
    return $err;
}

my $err = conf_fails('insite_ws without insite_redis',
    server => "        location /ws { insite_ws; }");
like($err, qr/\[emerg\].*insite_redis/, '... and the log names insite_redis');

$err = conf_fails('insite_ws_publish without insite_redis',
    server => "        location /pub { insite_ws_publish; }");
like($err, qr/\[emerg\].*insite_redis/, '... and the log names insite_redis');

$err = conf_fails('insite_ws_max_message_size below 128',
    http   => "    insite_redis 127.0.0.1:$rport;",
    server => "        location /ws { insite_ws; insite_ws_max_message_size 100; }");
like($err, qr/\[emerg\].*insite_ws_max_message_size/, '... and the log says which');

$err = conf_fails('insite_ws twice in a location',
    http   => "    insite_redis 127.0.0.1:$rport;",
    server => "        location /ws { insite_ws; insite_ws; }");
like($err, qr/\[emerg\].*insite_ws/, '... with an [emerg]');

$err = conf_fails('insite_ws with another content handler',
    http   => "    insite_redis 127.0.0.1:$rport;",
    server => "        location /ws { insite_ws; insite_ws_publish; }");
like($err, qr/\[emerg\]/, '... with an [emerg]');

$err = conf_fails('insite_ws_ping_interval 0',
    http   => "    insite_redis 127.0.0.1:$rport;",
    server => "        location /ws { insite_ws; insite_ws_ping_interval 0; }");
like($err, qr/\[emerg\].*insite_ws_ping_interval/, '... and the log says which');

done_testing;
