# Tests of the Test::Nginx runner itself (t/lib/Test/Nginx) against plain
# nginx: no InsiteChart module is loaded.  Written in the openresty/test-nginx
# block format, so it also runs under the real Test::Nginx::Socket.

use lib 't/lib';
use Test::Nginx::Socket 'no_plan';

BEGIN { $ENV{TEST_NGINX_INSITE_GREETING} = 'hello-from-env' }

master_on();
workers(2);
repeat_each(1);
no_shuffle();

# worker pids seen by the "pid" block, checked after run_tests()
my (%worker_pids, %master_pids);
add_response_body_check(sub {
    my ($block, $body) = @_;
    return unless $block->name =~ /worker pids/;
    my $master = '';
    if (open my $fh, '<', server_root() . '/logs/nginx.pid') {
        $master = <$fh> // '';
        chomp $master;
    }
    $master_pids{$master} = 1 if length $master;
    $worker_pids{$1} = 1 if defined $body && $body =~ /^pid=(\d+)$/m;
});

run_tests();

ok(scalar(keys %worker_pids) >= 1, 'worker pids seen')
    or diag('no pid in the responses');
ok(!(grep { $master_pids{$_} } keys %worker_pids),
   'requests are served by workers, not by the master')
    or diag("worker pids: @{[ keys %worker_pids ]}; master: @{[ keys %master_pids ]}");

__DATA__

=== TEST 1: status and body
--- config
    location = /t { return 200 "hi\n"; }
--- request
GET /t
--- response_body
hi
--- error_code: 200
--- no_error_log
[error]



=== TEST 2: non-200 status, body without trailing newline (eval)
--- config
    location = /t { return 418 "teapot"; }
--- request
GET /t
--- response_body eval
"teapot"
--- error_code: 418



=== TEST 3: missing file: 404 and an [error] line in error.log
--- config
    location = /missing { root $TEST_NGINX_HTML_DIR; try_files /nope.html =404; }
    location /static/ { root $TEST_NGINX_HTML_DIR; }
--- request
GET /static/does-not-exist.html
--- error_code: 404
--- response_body_like: 404 Not Found
--- error_log
[error]
does-not-exist.html" failed (2: No such file or directory)
--- no_error_log
[crit]



=== TEST 4: error_log eval with qr// and an array
--- config
    location /static/ { root $TEST_NGINX_HTML_DIR; }
--- request
GET /static/gone.txt
--- error_code: 404
--- error_log eval
[qr/open\(\) ".*\/static\/gone\.txt" failed/, "No such file or directory"]
--- no_error_log eval
[qr/\[emerg\]/, "[alert]"]



=== TEST 5: response headers present, with value, absent, like
--- config
    location = /t {
        add_header X-Insite "edge";
        add_header X-Number 12345;
        return 200 "ok\n";
    }
--- request
GET /t
--- response_headers
X-Insite: edge
Content-Type: text/plain
Content-Length: 3
!X-Absent
!Transfer-Encoding
--- response_headers_like
X-Number: ^\d+$
Server: ^nginx
--- response_body
ok



=== TEST 6: more_headers reach nginx
--- config
    location = /t { return 200 "x=$http_x_insite_test ua=$http_user_agent host=$host\n"; }
--- request
GET /t
--- more_headers
X-Insite-Test: value 42
User-Agent: runner-test
--- response_body
x=value 42 ua=runner-test host=localhost



=== TEST 7: request body gets a Content-Length
--- config
    location = /t { return 200 "len=$content_length method=$request_method\n"; }
--- request
POST /t
hello world
--- response_body
len=11 method=POST



=== TEST 8: raw_request is sent as is
--- config
    location = /raw { return 200 "proto=$server_protocol\n"; }
--- raw_request eval
"GET /raw HTTP/1.0\r\nHost: example\r\n\r\n"
--- response_body
proto=HTTP/1.0
--- response_headers
!Transfer-Encoding



=== TEST 9: raw_request in pieces (array)
--- config
    location = /raw { return 200 "uri=$uri\n"; }
--- raw_request eval
["GET /r", "aw HTTP/1.1\r\nHost: x\r\n", "Connection: close\r\n\r\n"]
--- response_body
uri=/raw



=== TEST 10: several requests in one block (request eval array)
--- config
    location /n/ { return 200 "uri=$uri\n"; }
    location = /gone { return 410; }
--- request eval
["GET /n/1", "GET /n/2", "GET /gone"]
--- error_code eval
[200, 200, 410]
--- response_body_like eval
[qr{^uri=/n/1$}, qr{^uri=/n/2$}, qr{410 Gone}]



=== TEST 11: $TEST_NGINX_* substitution in config and request
--- config
    location = /env {
        return 200 "greeting=$TEST_NGINX_INSITE_GREETING arg=$arg_p\n";
    }
--- request
GET /env?p=$TEST_NGINX_SERVER_PORT
--- response_body_like: ^greeting=hello-from-env arg=\d+$



=== TEST 12: http_config and main_config land in the right contexts
--- main_config
    worker_rlimit_nofile 4096;
--- http_config
    map $uri $insite_kind {
        default    other;
        /mapped    mapped;
    }
--- config
    location / { return 200 "kind=$insite_kind\n"; }
--- request
GET /mapped
--- response_body
kind=mapped



=== TEST 13: chunked response (SSI) is decoded
--- user_files
>>> ssi.html
a<!--# set var="x" value="b" --><!--# echo var="x" -->c
--- config
    location = /ssi.html { root $TEST_NGINX_HTML_DIR; ssi on; }
--- request
GET /ssi.html
--- response_headers
Transfer-Encoding: chunked
!Content-Length
--- response_body
abc



=== TEST 14: HEAD has no body
--- config
    location = /t { return 200 "body\n"; }
--- request
HEAD /t
--- response_body eval
""
--- response_headers
Content-Length: 5



=== TEST 15: two worker processes run
--- config
    location = /pid { return 200 "pid=$pid\n"; }
--- request eval
[map { "GET /pid" } 1 .. 20]
--- response_body_like: ^pid=\d+$
--- grep_error_log eval: qr/start worker process \d+/
--- grep_error_log_out eval
qr/\Astart worker process (\d+)\nstart worker process (?!\1)\d+\n\z/



=== TEST 16: worker pids
--- config
    location = /pid { return 200 "pid=$pid\n"; }
--- request
GET /pid
--- response_body_like: ^pid=\d+$



=== TEST 17: timeout: the client gives up on a request nginx never finishes
--- config
    location = /t { return 200 "never\n"; }
--- raw_request eval
"GET /t HTTP/1.1\r\nHost: x\r\n"
--- timeout: 0.5
--- abort
--- error_log
client prematurely closed connection while reading client request headers



=== TEST 18: a config nginx refuses: must_die
--- config
    location = /t { insite_no_such_directive on; }
--- must_die
--- error_log
unknown directive "insite_no_such_directive"



=== TEST 19: an [alert] the block expects does not fail it
--- main_config
    worker_rlimit_nofile 2000000000;
--- config
    location = /t { return 200 "ok\n"; }
--- request
GET /t
--- response_body
ok
--- error_log
setrlimit(RLIMIT_NOFILE, 2000000000) failed
