# ngx_http_insite_gateway_module: JWT auth, $insite_user_id, request ids and
# the JSON error shape, nginx's own 502/504 as JSON, configuration errors.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use Digest::SHA qw(hmac_sha256);
use MIME::Base64 qw(encode_base64url);
use IO::Socket::INET;

# an HS256 token over $claims (JSON text), signed with $o{key}
sub main::jwt {
    my ($claims, %o) = @_;
    my $head = $o{header} // '{"alg":"HS256","typ":"JWT"}';
    my $input = encode_base64url($head) . '.' . encode_base64url($claims);
    return "$input." . encode_base64url(hmac_sha256($input, $o{key} // 'test-secret'));
}
sub main::bearer { return "Authorization: Bearer " . main::jwt(@_) }
our $now = time;

# a port that accepts connections (the kernel's backlog) but never answers
our $blackhole = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                       Listen => 64, Proto => 'tcp') or die $!;
$ENV{TEST_NGINX_BLACKHOLE_PORT} = $blackhole->sockport;
sub main::now { return $now }

repeat_each(1);
run_tests();

__DATA__

=== TEST 1: a valid token passes, $insite_user_id reaches the upstream, X-Request-ID is generated and sent both ways
--- config
    location /api {
        insite_gateway_jwt on;
        insite_gateway_jwt_secret "test-secret";
        proxy_set_header X-User-Id $insite_user_id;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend;
    }
    location /backend { return 200 "user=$http_x_user_id rid=$http_x_request_id\n"; }
--- request
GET /api
--- more_headers eval
main::bearer(sprintf '{"sub":"user-42","exp":%d}', main::now() + 3600)
--- error_code: 200
--- response_headers_like
X-Request-ID: ^[0-9a-f]{32}$
--- response_body_like
^user=user-42 rid=[0-9a-f]{32}$



=== TEST 2: the same id upstream and downstream; a well-formed client id is kept
--- config
    location /api {
        insite_gateway_jwt optional;
        insite_gateway_jwt_secret "test-secret";
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend;
    }
    location /backend { return 200 "rid=$http_x_request_id var=$insite_request_id\n"; }
--- request
GET /api
--- more_headers
X-Request-ID: abc.DEF_123-x
--- error_code: 200
--- response_headers
X-Request-ID: abc.DEF_123-x
--- response_body
rid=abc.DEF_123-x var=abc.DEF_123-x



=== TEST 3: a malformed client id is replaced, upstream and downstream alike
--- config
    location /api {
        insite_gateway_jwt optional;
        insite_gateway_jwt_secret "test-secret";
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend;
    }
    location /backend { return 200 "rid=$http_x_request_id\n"; }
--- request
GET /api
--- more_headers
X-Request-ID: bad id with spaces
--- error_code: 200
--- response_headers_like
X-Request-ID: ^[0-9a-f]{32}$
--- response_body_like
^rid=[0-9a-f]{32}$



=== TEST 4: a 129-character id is too long and is replaced
--- config
    location /api {
        insite_gateway_request_id on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend;
    }
    location /backend { return 200 "$http_x_request_id\n"; }
--- request
GET /api
--- more_headers eval
"X-Request-ID: " . ("a" x 129)
--- response_body_like
^[0-9a-f]{32}$



=== TEST 5: no token with jwt on: 401, WWW-Authenticate: Bearer, JSON with the request id
--- config
    location /api {
        insite_gateway_jwt on;
        insite_gateway_jwt_secret "test-secret";
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend;
    }
    location /backend { return 200 "should not get here\n"; }
--- request
GET /api
--- more_headers
X-Request-ID: req-401
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer
Content-Type: application/json
X-Request-ID: req-401
--- response_body
{"error":"unauthorized","message":"a bearer token is required","request_id":"req-401"}
--- error_log
insite gateway: no bearer token, request_id: req-401



=== TEST 6: expired, wrong key, alg none, RS256 confusion, malformed base64, bad JSON, no sub: all 401 invalid_token, reason logged
--- config
    location /api {
        insite_gateway_jwt on;
        insite_gateway_jwt_secret "test-secret";
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend;
    }
    location /backend { return 200 "ok\n"; }
--- request eval
[("GET /api") x 9]
--- more_headers eval
[main::bearer(sprintf('{"sub":"u","exp":%d}', main::now() - 10)),
 main::bearer('{"sub":"u"}', key => 'wrong-secret'),
 "Authorization: Bearer " . MIME::Base64::encode_base64url('{"alg":"none"}') . '.' . MIME::Base64::encode_base64url('{"sub":"u"}') . '.',
 main::bearer('{"sub":"u"}', header => '{"alg":"RS256","typ":"JWT"}'),
 "Authorization: Bearer " . do { my $t = main::jwt('{"sub":"u"}'); $t =~ s/^(.)/\$/; $t },
 "Authorization: Bearer not-a-jwt",
 main::bearer('{"sub":"u"'),
 main::bearer('{"name":"x"}'),
 main::bearer(sprintf('{"sub":"u","nbf":%d}', main::now() + 600))]
--- error_code eval
[(401) x 9]
--- response_headers eval
[("WWW-Authenticate: Bearer error=\"invalid_token\"") x 9]
--- response_body_like eval
[qr/^\{"error":"invalid_token","message":"the token has expired","request_id":"[0-9a-f]{32}"\}$/,
 (qr/^\{"error":"invalid_token","message":"the token is invalid","request_id":"[0-9a-f]{32}"\}$/) x 8]
--- error_log
invalid token (expired)
invalid token (signature)
invalid token (algorithm)
invalid token (malformed)
invalid token (subject)
invalid token (not_yet_valid)



=== TEST 7: optional: no token passes anonymously, an invalid one is still refused
--- config
    location /api {
        insite_gateway_jwt optional;
        insite_gateway_jwt_secret "test-secret";
        proxy_set_header X-User-Id $insite_user_id;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend;
    }
    location /backend { return 200 "user=[$http_x_user_id]\n"; }
--- request eval
["GET /api", "GET /api", "GET /api"]
--- more_headers eval
["", main::bearer('{"sub":"u"}', key => 'other'), main::bearer('{"sub":"bob"}')]
--- error_code eval
[200, 401, 200]
--- response_body_like eval
[qr/^user=\[\]$/, qr/"error":"invalid_token"/, qr/^user=\[bob\]$/]



=== TEST 8: leeway, iss and aud (string and array)
--- config
    location /api {
        insite_gateway_jwt on;
        insite_gateway_jwt_secret "test-secret";
        insite_gateway_jwt_leeway 30s;
        insite_gateway_jwt_claims iss=insite aud=edge;
        proxy_set_header X-User-Id $insite_user_id;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend;
    }
    location /backend { return 200 "user=$http_x_user_id\n"; }
--- request eval
[("GET /api") x 6]
--- more_headers eval
[main::bearer(sprintf('{"sub":"a","iss":"insite","aud":"edge","exp":%d}', main::now() - 10)),
 main::bearer(sprintf('{"sub":"b","iss":"insite","aud":["x","edge"],"nbf":%d}', main::now() + 10)),
 main::bearer(sprintf('{"sub":"c","iss":"insite","aud":"edge","exp":%d}', main::now() - 100)),
 main::bearer('{"sub":"d","iss":"other","aud":"edge"}'),
 main::bearer('{"sub":"e","iss":"insite","aud":["x"]}'),
 main::bearer('{"sub":"f","aud":"edge"}')]
--- error_code eval
[200, 200, 401, 401, 401, 401]
--- response_body_like eval
[qr/user=a/, qr/user=b/, qr/expired/, qr/invalid/, qr/invalid/, qr/invalid/]
--- error_log
invalid token (issuer)
invalid token (audience)



=== TEST 9: token from ?token= (opt-in, t/308) and from the cookie, Authorization first
--- config
    location /ws {
        insite_gateway_jwt on;
        insite_gateway_jwt_secret_file $TEST_NGINX_HTML_DIR/secret;
        insite_gateway_jwt_cookie insite_token;
        insite_gateway_jwt_query_token on;
        proxy_set_header X-User-Id $insite_user_id;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend;
    }
    location /backend { return 200 "user=$http_x_user_id\n"; }
--- user_files
>>> secret
test-secret
--- request eval
["GET /ws?a=1&token=" . main::jwt('{"sub":"q"}'), "GET /ws", "GET /ws?token=" . main::jwt('{"sub":"q"}')]
--- more_headers eval
["", "Cookie: x=1; insite_token=" . main::jwt('{"sub":"c"}'), main::bearer('{"sub":"h"}')]
--- response_body eval
["user=q\n", "user=c\n", "user=h\n"]



=== TEST 10: a subject with a control character is refused (no header injection)
--- config
    location /api {
        insite_gateway_jwt on;
        insite_gateway_jwt_secret "test-secret";
        proxy_set_header X-User-Id $insite_user_id;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/backend;
    }
    location /backend { return 200 "user=$http_x_user_id\n"; }
--- request
GET /api
--- more_headers eval
main::bearer('{"sub":"evil\r\nX-Admin: 1"}')
--- error_code: 401
--- error_log
invalid token (subject)



=== TEST 11: upstream refused: 502 as JSON; silent upstream: 504 as JSON; upstream's own 500 untouched
--- config
    location /dead {
        insite_gateway_service dead;
        proxy_pass http://127.0.0.1:1;
    }
    location /slow {
        insite_gateway_service slow;
        proxy_read_timeout 300ms;
        proxy_pass http://127.0.0.1:$TEST_NGINX_BLACKHOLE_PORT;
    }
    location /own500 {
        insite_gateway_service own;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/fail;
    }
    location /fail { return 500 "upstream says no\n"; }
--- request eval
["GET /dead", "GET /slow", "GET /own500", "HEAD /dead"]
--- error_code eval
[502, 504, 500, 502]
--- response_headers eval
["Content-Type: application/json", "Content-Type: application/json", "Content-Type: text/plain", "Content-Type: application/json"]
--- response_body_like eval
[qr/^\{"error":"bad_gateway","message":"the upstream service failed","request_id":"[0-9a-f]{32}"\}$/,
 qr/^\{"error":"gateway_timeout","message":"the upstream service did not answer in time","request_id":"[0-9a-f]{32}"\}$/,
 qr/^upstream says no$/, qr/^$/]
--- error_log
connect() failed (111: Connection refused)
upstream timed out



=== TEST 12: jwt on without a secret does not start
--- config
    location /api { insite_gateway_jwt on; }
--- must_die
--- error_log
insite_gateway_jwt needs insite_gateway_jwt_secret or insite_gateway_jwt_secret_file



=== TEST 13: bad parameters do not start
--- config
    location /api { insite_gateway_breaker failures=0; }
--- must_die
--- error_log
insite_gateway_breaker: invalid parameter "failures=0"



=== TEST 14: redis backend without insite_redis does not start
--- config
    location /api { insite_gateway_rate_limit zone=z key=$remote_addr rate=1r/s backend=redis; }
--- must_die
--- error_log
insite_gateway_rate_limit backend=redis needs insite_redis



=== TEST 15: locations without gateway directives are left alone
--- config
    location /plain { return 200 "plain\n"; }
--- request
GET /plain
--- response_headers
! X-Request-ID
--- response_body
plain
