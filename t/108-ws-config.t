# ngx_http_insite_ws_module: every time and size directive has a range that
# `nginx -t` checks, naming the directive and the value (issue 11, finding 4:
# "insite_ws_check_interval 0" used to spin both workers); insite_ws_channels
# and insite_ws_subscribe_rate are checked the same way; and a /ws location
# whose user comes from a cookie must restrict Origin (finding 5).
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use File::Temp ();
use Insite::Services ();

my $bin = $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx';

# runs nginx -t on a configuration with the modules loaded: (ok, output)
sub nginx_t {
    my (%o) = @_;
    my $dir = File::Temp::tempdir('insite-nginx-t-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    mkdir "$dir/logs";
    my $conf = '';
    $conf .= "load_module $_;\n" for split ' ', $ENV{TEST_NGINX_LOAD_MODULES} // '';
    $conf .= "error_log $dir/logs/error.log;\npid $dir/logs/nginx.pid;\n"
           . "events { worker_connections 64; }\n"
           . "http {\n    access_log off;\n    insite_redis 127.0.0.1:6379;\n"
           . ($o{http} // '') . "\n"
           . "    server {\n        listen 127.0.0.1:" . Insite::Services::free_port() . ";\n"
           . ($o{server} // '') . "\n    }\n}\n";
    open my $fh, '>', "$dir/nginx.conf" or die $!;
    print $fh $conf;
    close $fh;
    my $out = `'$bin' -t -q -p '$dir/' -c '$dir/nginx.conf' 2>&1`;
    return ($? == 0, $out);
}

sub refused {
    my ($name, $want, %o) = @_;
    my ($ok, $out) = nginx_t(%o);
    ok(!$ok, "$name: nginx -t fails");
    like($out, $want, "$name: the error names the directive and the value") or diag $out;
}

sub accepted {
    my ($name, %o) = @_;
    my ($ok, $out) = nginx_t(%o);
    ok($ok, "$name: nginx -t passes") or diag $out;
}

# --- ranges: http-level directives ------------------------------------------
my @main = (
    [ 'insite_ws_check_interval',  '0',     '1s',   qr/"insite_ws_check_interval" directive must be 100ms to 60s, not "0"/ ],
    [ 'insite_ws_check_interval',  '2m',    '60s',  qr/must be 100ms to 60s, not "2m"/ ],
    [ 'insite_ws_idempotency_ttl', '0',     '1s',   qr/"insite_ws_idempotency_ttl" directive must be 1s to 30d, not "0"/ ],
    [ 'insite_ws_idempotency_ttl', '31d',   '30d',  qr/must be 1s to 30d, not "31d"/ ],
    [ 'insite_ws_max_connections', '0',     '1',    qr/"insite_ws_max_connections" directive must be 1 to 10000000, not "0"/ ],
    [ 'insite_ws_shutdown_spread', '11m',   '0',    qr/"insite_ws_shutdown_spread" directive must be 0 to 10m, not "11m"/ ],
);
# --- ranges: location-level directives --------------------------------------
my @loc = (
    [ 'insite_ws_send_buffer',      '0',    '1k',   qr/"insite_ws_send_buffer" directive must be 1k to 1024m, not "0"/ ],
    [ 'insite_ws_send_buffer',      '2048m', '1024m', qr/must be 1k to 1024m, not "2048m"/ ],
    [ 'insite_ws_max_channels',     '0',    '1',    qr/"insite_ws_max_channels" directive must be 1 to 100000, not "0"/ ],
    [ 'insite_ws_max_message_size', '127',  '128',  qr/"insite_ws_max_message_size" directive must be 128 to 16m, not "127"/ ],
    [ 'insite_ws_ping_interval',    '0',    '100ms', qr/"insite_ws_ping_interval" directive must be 100ms to 1h, not "0"/ ],
    [ 'insite_ws_idle_timeout',     '0',    '24h',  qr/"insite_ws_idle_timeout" directive must be 100ms to 24h, not "0"/ ],
    [ 'insite_ws_history',          '1000001', '0', qr/"insite_ws_history" directive must be 0 to 1000000, not "1000001"/ ],
    [ 'insite_ws_notsent_lowat',    '512',  '1k',   qr/"insite_ws_notsent_lowat" directive must be off or 1k to 16m, not "512"/ ],
    [ 'insite_ws_notsent_lowat',    '32m',  'off',  qr/must be off or 1k to 16m, not "32m"/ ],
    [ 'insite_ws_notsent_lowat',    'on',   '16m',  qr/"insite_ws_notsent_lowat" directive invalid value/ ],
);

for my $d (@main) {
    my ($name, $bad, $good, $want) = @$d;
    refused("$name $bad", $want, http => "    $name $bad;", server => '        location /ws { insite_ws; }');
    accepted("$name $good", http => "    $name $good;", server => '        location /ws { insite_ws; }');
}
for my $d (@loc) {
    my ($name, $bad, $good, $want) = @$d;
    refused("$name $bad", $want, server => "        location /ws { insite_ws; $name $bad; }");
    accepted("$name $good", server => "        location /ws { insite_ws; $name $good; }");
}

# --- the key prefix: braces would break the channels' hash tags -------------
refused('insite_ws_key_prefix with a brace', qr/"insite_ws_key_prefix".*not "in\{s"/,
        http => '    insite_ws_key_prefix "in{s";', server => '        location /ws { insite_ws; }');

# --- insite_ws_channels and insite_ws_subscribe_rate ------------------------
refused('insite_ws_channels with a bad pattern', qr/insite_ws_channels.*invalid pattern "stock\?"/,
        server => '        location /ws { insite_ws; insite_ws_channels stock_updates:* stock?; }');
accepted('insite_ws_channels patterns',
         server => '        location /ws { insite_ws; insite_ws_channels stock_updates:* sentiment_updates:* alert:*; }');
refused('insite_ws_subscribe_rate 0r/s', qr/"insite_ws_subscribe_rate" must be 1r\/s to 100000r\/s, not "0r\/s"/,
        server => '        location /ws { insite_ws; insite_ws_subscribe_rate 0r/s; }');
refused('insite_ws_subscribe_rate without a unit', qr/not "20"/,
        server => '        location /ws { insite_ws; insite_ws_subscribe_rate 20; }');
refused('insite_ws_subscribe_rate burst=0', qr/burst=1 to burst=100000, not "burst=0"/,
        server => '        location /ws { insite_ws; insite_ws_subscribe_rate 20r/s burst=0; }');
accepted('insite_ws_subscribe_rate 20r/s burst=200',
         server => '        location /ws { insite_ws; insite_ws_subscribe_rate 20r/s burst=200; }');

# --- finding 5: a cookie names the ws user -> an Origin list is required ----
my $gw = "    insite_gateway_jwt_secret \"test-secret\";\n"
       . "    insite_gateway_jwt_cookie insite_token;";
refused('cookie identity without an Origin list',
        qr/location "\/ws": insite_ws takes its user from a cookie.*insite_ws_allowed_origins/,
        http => $gw,
        server => "        location /ws { insite_ws; insite_gateway_jwt optional;\n"
                . "            insite_ws_user \$insite_user_id; }");
refused('cookie identity, jwt on, without an Origin list', qr/location "\/ws2": insite_ws takes its user from a cookie/,
        http => $gw,
        server => "        location /ws2 { insite_ws; insite_gateway_jwt on; }");
accepted('cookie identity with an Origin list', http => $gw,
         server => "        location /ws { insite_ws; insite_gateway_jwt optional;\n"
                 . "            insite_ws_allowed_origins https://app.example.com; }");
accepted('cookie identity with the explicit opt-out', http => $gw,
         server => "        location /ws { insite_ws; insite_gateway_jwt optional;\n"
                 . "            insite_ws_allow_any_origin on; }");
accepted('an Origin list inherited from the server level', http => $gw,
         server => "        insite_ws_allowed_origins https://app.example.com;\n"
                 . "        location /ws { insite_ws; insite_gateway_jwt optional; }");
accepted('no JWT in the ws location: no cookie identity', http => $gw,
         server => '        location /ws { insite_ws; }');
accepted('JWT from the Authorization header only (no cookie)',
         http => '    insite_gateway_jwt_secret "test-secret";',
         server => '        location /ws { insite_ws; insite_gateway_jwt optional; }');

done_testing();
