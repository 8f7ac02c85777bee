# ngx_http_insite_gateway_module: bearer tokens in the query string are
# opt-in (insite_gateway_jwt_query_token, default off: tokens in URLs end
# up in access logs), and when enabled the `token` argument is taken out of
# the request before anything is proxied or logged: the upstream's request
# line, $args, $request_uri and the access log's $request never show it.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Digest::SHA qw(hmac_sha256);
use MIME::Base64 qw(encode_base64url);
use Insite::Nginx;
use Insite::EchoBackend;

sub jwt {
    my ($claims) = @_;
    my $input = encode_base64url('{"alg":"HS256","typ":"JWT"}') . '.'
              . encode_base64url($claims);
    return "$input." . encode_base64url(hmac_sha256($input, 'k'));
}

my $bport = Insite::EchoBackend::start();
my $tok = jwt(sprintf '{"sub":"u-1","exp":%d}', time + 3600);

my $ngx = Insite::Nginx->new(
    http => <<'HTTP',
    log_format rq '$request | $request_uri | $args';
HTTP
    server => <<"SERVER",
        access_log logs/rq.log rq;
        location /default/ {
            insite_gateway_jwt on;
            insite_gateway_jwt_secret k;
            insite_gateway_jwt_cookie access_token;
            proxy_pass http://127.0.0.1:$bport;
        }
        location /query/ {
            insite_gateway_jwt on;
            insite_gateway_jwt_secret k;
            insite_gateway_jwt_query_token on;
            proxy_pass http://127.0.0.1:$bport;
        }
        location /query-uri/ {
            insite_gateway_jwt on;
            insite_gateway_jwt_secret k;
            insite_gateway_jwt_query_token on;
            proxy_pass http://127.0.0.1:$bport/rewritten/;
        }
        location /optional/ {
            insite_gateway_jwt optional;
            insite_gateway_jwt_secret k;
            proxy_pass http://127.0.0.1:$bport;
        }
        location /vars/ {
            insite_gateway_jwt on;
            insite_gateway_jwt_secret k;
            insite_gateway_jwt_query_token on;
            insite_healthz;
            add_header X-Args "\$args";
            add_header X-Request-Uri "\$request_uri";
            add_header X-Arg-Token "\$arg_token";
        }
SERVER
);

sub line { my ($r) = @_; return ((split /\n/, $r->{body} // '')[0] // '') }

# 1. off by default: a token in the query string is not a credential
my $r = $ngx->get("/default/a?token=$tok");
is($r->{status}, 401, 'default: ?token= is refused (401)');
like($r->{body}, qr/"error":"unauthorized"/, 'default: as if no token was sent');
$r = $ngx->get('/default/a', headers => ['Cookie' => "access_token=$tok"]);
is($r->{status}, 200, 'default: the cookie still works');
$r = $ngx->get('/default/a', headers => ['Authorization' => "Bearer $tok"]);
is($r->{status}, 200, 'default: the bearer header still works');
$r = $ngx->get("/optional/a?token=$tok");
is($r->{status}, 200, 'optional: ?token= is ignored, anonymous');
unlike($r->{body}, qr/^X-User/mi, 'optional: no identity from the query');

# 2. enabled: accepted, and the argument is gone from what is proxied
$r = $ngx->get("/query/a?token=$tok");
is($r->{status}, 200, 'query_token on: ?token= accepted');
is(line($r), 'GET /query/a HTTP/1.0', 'the only argument stripped, no bare "?"');

$r = $ngx->get("/query/a?x=1&token=$tok&y=%20two&tokens=keep");
is($r->{status}, 200, 'among other arguments: accepted');
is(line($r), 'GET /query/a?x=1&y=%20two&tokens=keep HTTP/1.0',
   'only the token argument stripped, the others kept byte for byte');

$r = $ngx->get("/query/a%20b?token=$tok&z=3");
is(line($r), 'GET /query/a%20b?z=3 HTTP/1.0', 'the path keeps its encoding');

$r = $ngx->get("/query-uri/a?token=$tok&z=3");
is(line($r), 'GET /rewritten/a?z=3 HTTP/1.0', 'proxy_pass with a URI: stripped too');

$r = $ngx->get("/query/a?token=" . substr($tok, 0, -2));
is($r->{status}, 401, 'an invalid query token is refused');

# 3. the variables the request exposes
$r = $ngx->get("/vars/a?q=1&token=$tok");
is($r->{status}, 200, 'vars: accepted');
is($r->{headers}{'x-args'}, 'q=1', '$args without the token');
is($r->{headers}{'x-request-uri'}, '/vars/a?q=1', '$request_uri without the token');
is($r->{headers}{'x-arg-token'} // '', '', '$arg_token empty');

$ngx->stop;
$ngx->check_log;

# 4. the access log never has the token (its signature is a secret)
my $sig = (split /\./, $tok)[2];
my $log = Test::Nginx::Util::slurp($ngx->dir . '/logs/rq.log');
like($log, qr{^GET /query/a\?x=1&y=%20two&tokens=keep HTTP/1\.1 \| /query/a\?x=1&y=%20two&tokens=keep \| x=1&y=%20two&tokens=keep$}m,
     'access log: $request, $request_uri and $args without the token');
my @leak = grep { /\Q$sig\E/ && !m{^GET /(default|optional)/} } split /\n/, $log;
is(scalar @leak, 0, 'no access log line of a query_token location has the token')
    or diag join "\n", @leak;
@leak = grep { /\Q$sig\E/ && !m{GET /(default|optional)/} } split /\n/, $ngx->error_log;
is(scalar @leak, 0, 'the error log never has a token taken from the query')
    or diag join "\n", @leak;

done_testing;
