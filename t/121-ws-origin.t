# ngx_http_insite_ws_module: the Origin allow-list compares whole origins.
# Near misses of a listed origin -- a prefix of it, it with more after it,
# an empty Origin, a default port spelled out, a trailing slash, another
# scheme -- are each refused with 403 and the JSON error; the listed
# origins pass, also with their scheme and host in another case (RFC 6454
# compares scheme and host case-insensitively: HTTP://LOCALHOST:3000 is the
# origin http://localhost:3000, and only a non-browser sends it that way).
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use JSON::PP ();
use Insite::Services qw(start_redis);
use Insite::Nginx;
use Insite::WS;

plan skip_all => 'TEST_NGINX_LOAD_MODULES not set (run under scripts/test.sh)'
    unless $ENV{TEST_NGINX_LOAD_MODULES};

my $redis = start_redis();
my $ngx = Insite::Nginx->new(
    http   => "    insite_redis 127.0.0.1:" . $redis->port . ";",
    server => "        location /ws {\n"
            . "            insite_ws;\n"
            . "            insite_ws_allowed_origins https://app.insitechart.example http://localhost:3000;\n"
            . "        }\n"
            . "        location /status { insite_ws_status; }",
);
my $port = $ngx->port;
# insite_ws_status names the connections' states ("connected")
ok(Insite::WS->wait_ready($port), 'Redis connected in both workers (insite_ws_status)');
my $JSON = JSON::PP->new->utf8;

sub status_for {
    my ($origin) = @_;
    my $ws = Insite::WS->connect($port, headers => [Origin => $origin]);
    my $st = $ws->status;
    my $j = $st == 403 ? eval { $JSON->decode($ws->body // '') } : undef;
    $ws->close;
    return ($st, $j);
}

for my $o ('http://localhost:300', 'http://localhost:30', 'http://localhost:', 'http://localhost',
           'http://localhost:30000', 'http://localhost:3000/', 'http://localhost:3000 x',
           'http://localhost:3000.evil.example', 'https://localhost:3000',
           'https://app.insitechart.exampl', 'https://app.insitechart.example:443',
           'https://app.insitechart.example.', 'https://app.insitechart.example/',
           'http://app.insitechart.example', 'https://app.insitechart.examplex',
           'https://app.insitechart.example http://localhost:3000', 'h', '')
{
    my ($st, $j) = status_for($o);
    is($st, 403, "Origin \"$o\": 403");
    is($j && $j->{error}, 'forbidden', "Origin \"$o\": JSON error forbidden") if $st == 403;
}

for my $o ('http://localhost:3000', 'https://app.insitechart.example',
           'HTTP://LOCALHOST:3000', 'https://App.InsiteChart.example')
{
    my ($st) = status_for($o);
    is($st, 101, "Origin \"$o\": 101");
}

{
    my $ws = Insite::WS->connect($port);
    is($ws->status, 101, 'no Origin (not a browser): 101');
    $ws->close;
}

like($ngx->error_log, qr/origin "http:\/\/localhost:300" not allowed/, 'a refusal is logged with the Origin');
$ngx->check_log;
done_testing();
