# ngx_http_insite_ws_module: permessage-deflate negotiation edge cases
# (RFC 7692 5 and 7.1; issue 18).
#  - a Sec-WebSocket-Extensions value that is not the RFC's syntax fails
#    the handshake: 400 with a JSON reason, logged;
#  - an offer with a parameter that is unknown, repeated, out of range or
#    needs a value it lacks is declined: 101 without the extension (and
#    then RSV1 from the client is a violation, 1002); a later acceptable
#    offer in the same header is taken;
#  - server_max_window_bits=8 is declined (zlib cannot keep to it);
#  - insite_ws_deflate and insite_ws_deflate_min_size are checked by nginx -t.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Insite::Services qw(start_redis);
use Insite::Nginx;
use Insite::WS;

plan skip_all => 'TEST_NGINX_LOAD_MODULES not set (run under scripts/test.sh)'
    unless $ENV{TEST_NGINX_LOAD_MODULES};

my $redis = start_redis();
my $rport = $redis->port;
my $ngx = Insite::Nginx->new(
    http   => "    insite_redis 127.0.0.1:$rport;\n    insite_ws_deflate on;\n",
    server => "        location /ws { insite_ws; }\n"
            . "        location /status { insite_ws_status; }",
);
my $port = $ngx->port;
ok(Insite::WS->wait_ready($port), 'Redis connected in both workers');

sub try {
    my ($offer) = @_;
    my $ws = Insite::WS->connect($port, path => '/ws', headers => ['Sec-WebSocket-Extensions' => $offer]);
    my ($e) = ($ws->head // '') =~ /^Sec-WebSocket-Extensions:\s*([^\r\n]*)/mi;
    return ($ws, $e);
}

my $ANSWER = 'permessage-deflate; server_no_context_takeover; client_no_context_takeover';

# --- malformed: 400 -------------------------------------------------------------
for my $bad ('permessage-deflate;', 'permessage-deflate; =15', 'permessage-deflate; a="open',
             'permessage-deflate x', ', ;') {
    my ($ws) = try($bad);
    is($ws->status, 400, "malformed \"$bad\": 400");
    like($ws->body // '', qr/"error":"bad_request".*invalid Sec-WebSocket-Extensions/,
         '... with a JSON reason');
    $ws->close;
}
like($ngx->error_log, qr/invalid Sec-WebSocket-Extensions "permessage-deflate x"/,
     'the refusal is logged with the header');

# --- declined offers: 101 without the extension -------------------------------------
for my $declined ('permessage-deflate; server_max_window_bits=8',
                  'permessage-deflate; server_max_window_bits=16',
                  'permessage-deflate; server_max_window_bits',
                  'permessage-deflate; client_max_window_bits=7',
                  'permessage-deflate; server_no_context_takeover; server_no_context_takeover',
                  'permessage-deflate; server_no_context_takeover=yes',
                  'permessage-deflate; mystery',
                  'x-webkit-deflate-frame') {
    my ($ws, $e) = try($declined);
    is($ws->status, 101, "declined \"$declined\": 101");
    is($e, undef, '... without Sec-WebSocket-Extensions');
    $ws->close;
}

# a declined offer, then RSV1 anyway: the extension is not on
{
    my ($ws) = try('permessage-deflate; mystery');
    $ws->write_raw(Insite::WS::frame(1, Insite::WS::deflate_message('{"op":"ping"}'), rsv => 4));
    my ($code) = $ws->expect_close(timeout => 5);
    is($code, 1002, 'RSV1 after a declined offer: 1002');
    $ws->close;
}

# --- the first acceptable offer wins ---------------------------------------------
{
    my ($ws, $e) = try('permessage-deflate; server_max_window_bits=8, '
                     . 'permessage-deflate; server_max_window_bits="12", permessage-deflate');
    is($e, "$ANSWER; server_max_window_bits=12", 'the first acceptable of three offers is answered (quoted value)');
    $ws->send_frame(1, Insite::WS::deflate_message('{"op":"ping","id":"p"}'), rsv => 4);
    my $pong = $ws->recv_json(timeout => 5);
    is($pong && $pong->{id}, 'p', 'and the connection speaks it');
    $ws->close;
}
{
    my ($ws, $e) = try('PerMessage-Deflate ; client_no_context_takeover ; client_max_window_bits=15');
    is($e, $ANSWER, 'names are case-insensitive, white space around ";" allowed');
    $ws->close;
}

# --- nginx -t ------------------------------------------------------------------
sub nginx_t {
    my ($loc) = @_;
    return Insite::Nginx->config_test(server => "        location /ws { insite_ws; $loc }");
}
for my $case ([ 'insite_ws_deflate maybe;', qr/invalid value "maybe" in "insite_ws_deflate" directive/ ],
              [ 'insite_ws_deflate_min_size 17m;', qr/"insite_ws_deflate_min_size" directive must be 0 to 16m, not "17m"/ ]) {
    my ($ok, $out) = nginx_t($case->[0]);
    ok(!$ok, "nginx -t refuses: $case->[0]");
    like($out, $case->[1], '... naming the directive and the value') or diag $out;
}
my ($ok, $out) = nginx_t('insite_ws_deflate on; insite_ws_deflate_min_size 0;');
ok($ok, 'nginx -t accepts insite_ws_deflate on; insite_ws_deflate_min_size 0') or diag $out;

$ngx->check_log;
$ngx->stop;

done_testing();
