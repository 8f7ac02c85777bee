# ngx_http_insite_module: insite_healthz, insite_metrics, insite_redis.
use lib 't/lib';
use Test::Nginx::Socket 'no_plan';

repeat_each(1);
run_tests();

__DATA__

=== TEST 1: healthz without insite_redis lists the loaded modules
--- config
    location = /healthz { insite_healthz; }
--- request
GET /healthz
--- error_code: 200
--- response_headers
Content-Type: application/json
--- response_body_like chomp
^\{"status":"ok","version":"[0-9.]+","pid":\d+,"modules":\["ngx_http_insite_module","ngx_http_insite_ws_module","ngx_http_insite_gateway_module","ngx_http_insite_gdpr_module"\],"redis":\{"configured":false,"state":"not configured"\}\}$



=== TEST 2: healthz pings Redis through the worker's connection
--- http_config
    insite_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config
    location = /healthz { insite_healthz; }
    location = /t { return 204; }
--- request eval
# the first request may reach a worker whose connection is still coming up
# (healthz would rightly say 503 "connecting" then)
["GET /t", "GET /healthz", "GET /healthz", "GET /healthz"]
--- error_code eval
[204, 200, 200, 200]
--- response_body_like eval
[qr/^$/,
 qr/"redis":\{"configured":true,"state":"connected","ping_ms":\d+\}\}$/,
 qr/"redis":\{"configured":true,"state":"connected","ping_ms":\d+\}\}$/,
 qr/"redis":\{"configured":true,"state":"connected","ping_ms":\d+\}\}$/]
--- error_log
insite redis 127.0.0.1:
(commands): connected
--- no_error_log
[warn]



=== TEST 3: healthz answers HEAD, refuses POST
--- config
    location = /healthz { insite_healthz; }
--- request eval
["HEAD /healthz", "POST /healthz\nbody"]
--- error_code eval
[200, 405]



=== TEST 4: Redis not listening: healthz says down (503 degraded) at once, the log says why
--- http_config
    insite_redis 127.0.0.1:1 connect_timeout=300ms;
--- config
    location = /healthz { insite_healthz; }
--- request
GET /healthz
--- error_code: 503
--- response_body_like
^\{"status":"degraded",.*"redis":\{"configured":true,"state":"(down|connecting)"\}\}$
--- wait: 0.3
--- error_log
insite redis 127.0.0.1:1 (commands): connect failed: Connection refused; reconnecting in 1000ms



=== TEST 5: metrics: Prometheus text with HELP/TYPE and the histogram series
--- http_config
    insite_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config
    location = /metrics { insite_metrics; }
--- request
GET /metrics
--- error_code: 200
--- response_headers
Content-Type: text/plain; version=0.0.4; charset=utf-8
--- response_body_like eval
qr{\A# HELP insite_redis_connected [^\n]+
# TYPE insite_redis_connected gauge
insite_redis_connected \d+
.*
# TYPE insite_redis_command_duration_seconds histogram
insite_redis_command_duration_seconds_bucket\{le="0.0005"\} \d+
.*
insite_redis_command_duration_seconds_bucket\{le="\+Inf"\} \d+
insite_redis_command_duration_seconds_sum \d+\.\d{6}
insite_redis_command_duration_seconds_count \d+
}s



=== TEST 6: metrics add up over both workers
--- http_config
    insite_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config
    location = /healthz { insite_healthz; }
    location = /metrics { insite_metrics; }
--- ready_request
GET /metrics
--- ready_like: \ninsite_redis_connected 2\n
--- request eval
[("GET /healthz") x 20, "GET /metrics"]
--- response_body_like eval
[(qr/"status":"ok"/) x 20, qr/\ninsite_redis_connected 2\n(?s:.*)\ninsite_redis_commands_total (1[6-9]|20)\n/]



=== TEST 7: metrics refuse POST
--- config
    location = /metrics { insite_metrics; }
--- request
POST /metrics
x
--- error_code: 405



=== TEST 8: insite_redis with a bad parameter does not start
--- http_config
    insite_redis 127.0.0.1:6379 command_timeout=soon;
--- config
--- must_die
--- error_log
insite_redis: invalid parameter "command_timeout=soon"



=== TEST 9: insite_redis twice
--- http_config
    insite_redis 127.0.0.1:6379;
    insite_redis 127.0.0.1:6380;
--- config
--- must_die
--- error_log
"insite_redis" directive is duplicate



=== TEST 10: insite_redis with a unix socket and db/password options parses
--- http_config
    insite_redis unix:/nonexistent/redis.sock password=secret db=3 connect_timeout=100ms;
--- config
    location = /healthz { insite_healthz; }
--- request
GET /healthz
--- error_code: 503
--- wait: 0.2
--- error_log
insite redis unix:/nonexistent/redis.sock (commands): connect failed
--- no_error_log
secret
