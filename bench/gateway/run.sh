#!/usr/bin/env bash
# Gateway overhead benchmark (not run by the test suite).
#
#   bench/gateway/run.sh [duration=5s] [connections=50] [threads=2] [rounds=3]
#   PERF=1 bench/gateway/run.sh ...   also perf-record the gateway's workers
#                                     during gw_local (PERF_VARIANT) of the
#                                     last round; PERF_OUT=file keeps the data
#   MODE=cpu bench/gateway/run.sh [dur] [conns] [threads] [pairs]
#                                     only plain and gw_local, alternated:
#                                     worker CPU time per request of each and
#                                     the ratio plain / gw_local per pair
#   PIN=1 bench/gateway/run.sh ...    one gateway worker on CPU 0, and wrk,
#                                     the upstream and Redis on CPU 1 (the
#                                     WebSocket bench's layout): the worker
#                                     is the bottleneck and never shares its
#                                     core, so the ratios move less between
#                                     rounds (docs/gateway.md, round 7)
#   MODE=callgrind REQUESTS=2000 bench/gateway/run.sh
#                                     instructions per request gw_local adds
#                                     over plain (noise-free), top functions;
#                                     CG_OUT=dir keeps both callgrind files
#
# One nginx (2 workers) in front of one local upstream nginx (return 200),
# measured with wrk in the same run:
#   plain      proxy_pass only
#   limit_req  proxy_pass + nginx's limit_req nodelay (never refusing)
#   gw_local   JWT + circuit breaker + local GCRA limit (never refusing)
#   gw_redis   JWT + circuit breaker + Redis GCRA limit (never refusing)
# The variants are interleaved: each round runs every variant once, in an
# order rotated by one per round, so that a burst of load from elsewhere on
# a shared machine hits different variants in different rounds.  Each round
# prints req/s, p50, p99, the gateway workers' CPU time per request, the load
# average and the ratios the issue sets:
#   gw_local >= 0.9x plain req/s, gw_local p99 <= 1.1x limit_req p99,
#   gw_redis >= 0.6x plain req/s.
# Modules from build/modules (make modules); Redis from redis-server.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
dur=${1:-5s}
conns=${2:-50}
threads=${3:-2}
rounds=${4:-3}
mods=${MODULES:-$root/build/modules}
nginx=${NGINX:-/usr/sbin/nginx}

command -v wrk >/dev/null || { echo "wrk missing: apt-get install wrk" >&2; exit 1; }

dir=$(mktemp -d /tmp/insite-gw-bench-XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
up_port=$(free_port); gw_port=$(free_port); redis_port=$(free_port)

# PIN=1: what is not measured runs on CPU 1, the gateway's worker on CPU 0
other=(); [ "${PIN:-0}" = 1 ] && other=(taskset -c 1)

"${other[@]}" redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
  --daemonize no --dir "$dir" >"$dir/redis.log" 2>&1 &
pids+=($!)

secret=bench-secret
b64url() { base64 -w0 | tr '+/' '-_' | tr -d '='; }
hdr=$(printf '{"alg":"HS256","typ":"JWT"}' | b64url)
pay=$(printf '{"sub":"bench-user","exp":%d}' $(( $(date +%s) + 86400 )) | b64url)
sig=$(printf '%s.%s' "$hdr" "$pay" | openssl dgst -sha256 -hmac "$secret" -binary | b64url)
token="$hdr.$pay.$sig"

# MODE=callgrind: the gateway is one process under valgrind (see below)
procs="worker_processes 2;"
[ "${PIN:-0}" = 1 ] && procs="worker_processes 1; worker_cpu_affinity 01;"
[ "${MODE:-}" = callgrind ] && procs="worker_processes 1; master_process off;"
nworkers=${procs#worker_processes }; nworkers=${nworkers%%;*}

mkdir -p "$dir/up/logs" "$dir/gw/logs"
cat >"$dir/up/nginx.conf" <<CONF
worker_processes 1; daemon off; error_log $dir/up/logs/error.log warn; pid $dir/up/logs/nginx.pid;
events { worker_connections 4096; }
http { access_log off; server { listen 127.0.0.1:$up_port; keepalive_requests 100000;
  location / { return 200 "ok\n"; } } }
CONF

{
  for m in ngx_http_insite_module ngx_http_insite_gateway_module; do
    echo "load_module $mods/$m.so;"
  done
  cat <<CONF
$procs daemon off; error_log $dir/gw/logs/error.log warn; pid $dir/gw/logs/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  insite_redis 127.0.0.1:$redis_port;
  upstream up { server 127.0.0.1:$up_port; keepalive 64; }
  limit_req_zone \$binary_remote_addr zone=lr:10m rate=1000000r/s;
  insite_gateway_rate_zone gl 10m;
  server {
    listen 127.0.0.1:$gw_port; keepalive_requests 100000;
    proxy_http_version 1.1; proxy_set_header Connection "";
    location /plain { proxy_pass http://up; }
    location /limit_req { limit_req zone=lr burst=1000000 nodelay; proxy_pass http://up; }
    location /gw_local {
      insite_gateway_service bench; insite_gateway_breaker failures=5 window=30s recovery=60s half_open=3;
      insite_gateway_jwt on; insite_gateway_jwt_secret $secret;
      insite_gateway_rate_limit zone=gl key=\$insite_user_id rate=1000000r/s burst=1000000;
      proxy_pass http://up;
    }
    location /gw_redis {
      insite_gateway_service bench; insite_gateway_breaker failures=5 window=30s recovery=60s half_open=3;
      insite_gateway_jwt on; insite_gateway_jwt_secret $secret;
      insite_gateway_rate_limit zone=gr key=\$insite_user_id rate=1000000r/s burst=1000000 backend=redis;
      proxy_pass http://up;
    }
  }
}
CONF
} >"$dir/gw/nginx.conf"

"${other[@]}" "$nginx" -p "$dir/up/" -c "$dir/up/nginx.conf" & pids+=($!)
[ "${MODE:-}" = callgrind ] || { "$nginx" -p "$dir/gw/" -c "$dir/gw/nginx.conf" & pids+=($!); }
sleep 1.5

if [ "${MODE:-}" = callgrind ]; then
  # Instructions, not time: one gateway process under callgrind serves the
  # same fixed number of requests (one keepalive connection, curl) to
  # /plain, then, in a second process, to /gw_local.  Start-up is the same
  # in both, so the difference of the totals divided by the requests is what
  # the gateway adds per request, exactly, whatever else runs on the machine.
  n=${REQUESTS:-2000}
  for ((i = 0; i < n; i++)); do printf 'url = "http://127.0.0.1:%s/LOC"\noutput = "/dev/null"\n' "$gw_port"; done >"$dir/urls"
  declare -A ir=()
  for v in plain gw_local; do
    valgrind -q --tool=callgrind --callgrind-out-file="$dir/cg.$v" \
      "$nginx" -p "$dir/gw/" -c "$dir/gw/nginx.conf" & vg=$!
    for ((w = 0; w < 100; w++)); do
      curl -s -o /dev/null "http://127.0.0.1:$gw_port/plain" && break; sleep 0.2
    done
    sed "s#/LOC#/$v#" "$dir/urls" | curl -s -H "Authorization: Bearer $token" -K - \
      -w '%{http_code}\n' | sort | uniq -c | awk -v v="$v" '$2 != 200 { print v ": " $0; bad = 1 } END { exit bad }'
    kill -QUIT "$vg"; wait "$vg" || true
    ir[$v]=$(awk '/^(summary|totals):/ { print $2; exit }' "$dir/cg.$v")
  done
  echo "# callgrind, $n requests on one connection after start-up (plus one probe to /plain)"
  echo "plain     total Ir ${ir[plain]}"
  echo "gw_local  total Ir ${ir[gw_local]}"
  awk -v a="${ir[gw_local]}" -v b="${ir[plain]}" -v n="$n" \
    'BEGIN { printf "gw_local - plain: %.0f instructions per request\n", (a - b) / n }'
  echo
  echo "# instructions per request gw_local adds over plain, by function (self; top 30)"
  for v in plain gw_local; do
    callgrind_annotate --auto=no --threshold=100 "$dir/cg.$v" 2>/dev/null \
      | awk -v v="$v" '/^ *[0-9,]+ \(/ && !/PROGRAM TOTALS/ { n = $1; gsub(",", "", n); f = $0;
          sub(/^ *[0-9,]+ \( *[0-9.]+%\) +/, "", f); sub(/ \[.*/, "", f); sub(/^.*:/, "", f); print v, n, f }'
  done | awk -v n="$n" '{ d[$3] += ($1 == "gw_local" ? $2 : -$2) }
      END { for (f in d) if (d[f] / n >= 5 || d[f] / n <= -5) printf "%10.0f  %s\n", d[f] / n, f }' \
    | sort -rn | head -30
  [ -n "${CG_OUT:-}" ] && cp "$dir/cg.plain" "$dir/cg.gw_local" "$CG_OUT/"
  exit 0
fi

# sanity: every variant answers 200 before it is measured
for v in plain limit_req gw_local gw_redis; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" "http://127.0.0.1:$gw_port/$v")
  [ "$code" = 200 ] || { echo "$v answers $code" >&2; cat "$dir/gw/logs/error.log" >&2; exit 1; }
done

to_ms() {  # wrk latency "1.23ms" / "456.00us" / "1.01s" -> ms
  awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /s$/) n *= 1000; printf "%.3f", n }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
workers() { pgrep -P "$(cat "$dir/gw/logs/nginx.pid")" | paste -sd,; }
. "$root/bench/lib/workers.sh"
worker_ticks() { workers_sum "$dir/gw/logs/nginx.pid" cpu; }

if [ "${MODE:-}" = cpu ]; then
  # plain and gw_local alternated in the same nginx, $rounds pairs, the
  # first of each pair swapped every round: the gateway workers' CPU time
  # per request of each, and the ratio plain / gw_local (1.0: the gateway
  # costs nothing; the req/s target, 0.9, needs at least about that)
  echo "# wrk -t$threads -c$conns -d$dur, $(nproc) cores, gateway $nworkers worker(s)$([ "${PIN:-0}" = 1 ] && echo ' on CPU 0, the rest on CPU 1'), $rounds pairs"
  printf '%-5s %-15s %12s %12s %12s %12s %10s %10s\n' pair load plain_us gw_us \
    cpu_pl/gw plain_req/s gw_req/s rps_gw/pl
  for ((round = 1; round <= rounds; round++)); do
    declare -A rps=() cpu=()
    load=$(cut -d' ' -f1-3 /proc/loadavg | tr ' ' /)
    pair=(plain gw_local); ((round % 2)) || pair=(gw_local plain)
    for v in "${pair[@]}"; do
      t0=$(worker_ticks)
      out=$("${other[@]}" wrk -t"$threads" -c"$conns" -d"$dur" -H "Authorization: Bearer $token" "http://127.0.0.1:$gw_port/$v")
      t1=$(worker_ticks)
      if echo "$out" | grep -q 'Non-2xx'; then echo "$v: non-2xx responses:"; echo "$out"; exit 1; fi
      rps[$v]=$(echo "$out" | awk '/^Requests\/sec/ { print $2 }')
      cpu[$v]=$(workers_us_per_req $((t1 - t0)) "$(echo "$out" | awk '/requests in/ { print $1 }')")
    done
    printf '%-5s %-15s %12s %12s %12s %12s %10s %10s\n' "$round" "$load" "${cpu[plain]}" "${cpu[gw_local]}" \
      "$(ratio "${cpu[plain]}" "${cpu[gw_local]}")" "${rps[plain]}" "${rps[gw_local]}" \
      "$(ratio "${rps[gw_local]}" "${rps[plain]}")"
    unset rps cpu
  done
  exit 0
fi

variants=(plain limit_req gw_local gw_redis)
echo "# wrk -t$threads -c$conns -d$dur, $(nproc) cores, gateway $nworkers worker(s)$([ "${PIN:-0}" = 1 ] && echo ' on CPU 0, the rest on CPU 1'), upstream 1 worker, $rounds rounds"
for ((round = 1; round <= rounds; round++)); do
  declare -A rps=() p50=() p99=() cpu=()
  load=$(cut -d' ' -f1-3 /proc/loadavg)
  order=()
  for ((k = 0; k < ${#variants[@]}; k++)); do
    order+=("${variants[$(( (k + round - 1) % ${#variants[@]} ))]}")
  done
  for v in "${order[@]}"; do
    perf_pid=
    if [ -n "${PERF:-}" ] && [ "$round" = "$rounds" ] && [ "$v" = "${PERF_VARIANT:-gw_local}" ]; then
      perf record -q -g -o "$dir/perf.data" -p "$(workers)" >/dev/null 2>&1 & perf_pid=$!
    fi
    t0=$(worker_ticks)
    out=$("${other[@]}" wrk -t"$threads" -c"$conns" -d"$dur" --latency -H "Authorization: Bearer $token" "http://127.0.0.1:$gw_port/$v")
    t1=$(worker_ticks)
    if [ -n "$perf_pid" ]; then kill -INT "$perf_pid"; wait "$perf_pid" || true; fi
    if echo "$out" | grep -q 'Non-2xx'; then echo "$v: non-2xx responses:"; echo "$out"; exit 1; fi
    rps[$v]=$(echo "$out" | awk '/^Requests\/sec/ { print $2 }')
    p50[$v]=$(to_ms "$(echo "$out" | awk '$1 == "50%" { print $2 }')")
    p99[$v]=$(to_ms "$(echo "$out" | awk '$1 == "99%" { print $2 }')")
    n=$(echo "$out" | awk '/requests in/ { print $1 }')
    cpu[$v]=$(workers_us_per_req $((t1 - t0)) "$n")
  done
  echo
  echo "round $round (order: ${order[*]}; load average before: $load)"
  printf '%-10s %12s %10s %10s %12s\n' variant req/s p50_ms p99_ms cpu_us/req
  for v in "${variants[@]}"; do
    printf '%-10s %12s %10s %10s %12s\n' "$v" "${rps[$v]}" "${p50[$v]}" "${p99[$v]}" "${cpu[$v]}"
  done
  echo "gw_local / plain req/s      $(ratio "${rps[gw_local]}" "${rps[plain]}")   (target >= 0.90)"
  echo "gw_local / limit_req p99    $(ratio "${p99[gw_local]}" "${p99[limit_req]}")   (target <= 1.10)"
  echo "gw_redis / plain req/s      $(ratio "${rps[gw_redis]}" "${rps[plain]}")   (target >= 0.60)"
  echo "gw_local / plain cpu/req    $(ratio "${cpu[gw_local]}" "${cpu[plain]}")   (worker CPU per request)"
  unset rps p50 p99 cpu
done

if [ -n "${PERF:-}" ] && [ -f "$dir/perf.data" ]; then
  echo
  echo "# perf: gateway workers during ${PERF_VARIANT:-gw_local} (last round), self time"
  [ -n "${PERF_OUT:-}" ] && cp "$dir/perf.data" "$PERF_OUT"
  perf report -i "$dir/perf.data" --no-children --sort symbol --stdio 2>/dev/null \
    | grep -E '^ +[0-9]' | head -40
fi
