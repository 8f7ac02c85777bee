#!/usr/bin/env bash
# insite-stocks bars through nginx with the gateway (not run by the suite).
#
#   bench/stocks/run.sh [duration=5s] [connections=20] [threads=2]
#
# Seeds SYMBOLS (default 20) symbols x DAYS (default 30) days of 1-minute
# bars (390 a day) into a PostgreSQL of its own, starts two insite-stocks
# (one with its bars cache off, one with it on and warmed with every page
# the load asks for) and one nginx (2 workers) with the gateway (JWT,
# breaker, Redis per-user limit never refusing), then runs wrk with a Lua
# script asking for a random symbol's random day of 1-minute bars
# (/bars?interval=1m&from=D&to=D+1d, one page of 390 bars) and prints
# req/s, p50, p99 and the ratio to a static file, for, in this order:
#   static      nginx serving one such answer as a file (no gateway)
#   gw-static   the same file through the gateway and a proxy hop (JWT,
#               limit, breaker, keep-alive upstream): the ceiling of any
#               worker behind this gateway on this machine
#   cold        through the gateway, no proxy_cache, worker cache off
#               (every request is a PostgreSQL query)
#   warm        through the gateway, no proxy_cache, worker cache warm
#   cached      through the gateway with proxy_cache (nginx.conf.example)
#   worker-cold, worker-warm   the two workers straight (no nginx)
# With CPU=1 (default) it also prints the CPU each process group used per
# request in each run (from /proc: utime + stime), to show where the time
# goes.  THREADS_WORKER sets stocks.http_threads (default 8).
# Needs make modules workers, wrk, PostgreSQL and redis-server.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
dur=${1:-5s}
conns=${2:-20}
threads=${3:-2}
nsym=${SYMBOLS:-20}
ndays=${DAYS:-30}
mods=${MODULES:-$root/build/modules}
nginx=${NGINX:-/usr/sbin/nginx}

command -v wrk >/dev/null || { echo "wrk missing: apt-get install wrk" >&2; exit 1; }

dir=$(mktemp -d /tmp/insite-stocks-bench-XXXXXX)
chmod 755 "$dir"    # PostgreSQL runs as its own user
export INSITE_RUN_DIR=$dir/services
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  "$root/scripts/services.sh" stop redis pg >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT

"$root/scripts/services.sh" start redis pg >/dev/null
# shellcheck disable=SC1091
. "$INSITE_RUN_DIR/services.env"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cport=$(free_port); uport=$(free_port)

wport=$(free_port); hport=$(free_port); sport=$(free_port)   # workers cold/warm, static peer
declare -A wpid
start_worker() {  # port cache_mb name
  INSITE_PG_DSN=$INSITE_PG_DSN INSITE_REDIS_PORT=$INSITE_REDIS_PORT INSITE_STOCKS_HTTP_PORT=$1 \
    INSITE_STOCKS_HTTP_THREADS=${THREADS_WORKER:-8} INSITE_STOCKS_BARS_CACHE_MB=$2 \
    INSITE_PG_MIGRATIONS_DIR=$root/workers/migrations INSITE_LOG_LEVEL=warn \
    "$root/build/bin/insite-stocks" >"$dir/stocks-$3.log" 2>&1 &
  pids+=($!); wpid[$3]=$!
  for _ in $(seq 100); do curl -fs -o /dev/null "http://127.0.0.1:$1/healthz" && break; sleep 0.1; done
}
start_worker "$wport" 0 cold
start_worker "$hport" 256 warm

# trading days from 2024-01-02 (weekdays), 14:30Z..21:00Z
base=1704205800
psql "$INSITE_PG_DSN" -X -q -v ON_ERROR_STOP=1 <<SQL
INSERT INTO stock_prices (symbol, ts, open, high, low, close, volume, interval, source)
SELECT 'S' || s, to_timestamp($base) + d * interval '1 day' + m * interval '1 minute',
       100 + random(), 102, 99, 101, 1000, '1m', 'replay'
FROM generate_series(1, $nsym) s, generate_series(0, $ndays - 1) d, generate_series(0, 389) m;
VACUUM ANALYZE stock_prices;
SQL

secret=bench-secret
b64url() { base64 -w0 | tr '+/' '-_' | tr -d '='; }
hdr=$(printf '{"alg":"HS256","typ":"JWT"}' | b64url)
pay=$(printf '{"sub":"bench-user","exp":%d}' $(( $(date +%s) + 86400 )) | b64url)
sig=$(printf '%s.%s' "$hdr" "$pay" | openssl dgst -sha256 -hmac "$secret" -binary | b64url)
token="$hdr.$pay.$sig"

mkdir -p "$dir/gw/logs"
# a 1-day page is ~46 KB: nginx's default proxy buffers (8 x 4k + 4k)
# would spill each answer to a temporary file (nginx.conf.example sets these)
PROXY_BUFFERS=${PROXY_BUFFERS-proxy_buffer_size 16k; proxy_buffers 8 32k; proxy_busy_buffers_size 64k;}
wuport=$(free_port); gport=$(free_port)
loc() {
  cat <<LOC
    location /api/v1/stocks {
      insite_gateway_service stocks; insite_gateway_jwt on;
      insite_gateway_breaker failures=5 window=30s recovery=60s half_open=3;
      insite_gateway_rate_limit zone=api key=\$insite_user_id rate=1000000r/s burst=1000000 backend=redis fail=open;
      proxy_http_version 1.1; proxy_set_header Connection ""; proxy_set_header X-User-Id \$insite_user_id;
      $PROXY_BUFFERS
      $1
      proxy_pass http://$2;
    }
LOC
}
{
  for m in ngx_http_insite_module ngx_http_insite_gateway_module; do echo "load_module $mods/$m.so;"; done
  cat <<CONF
worker_processes 2; daemon off; error_log $dir/gw/logs/error.log warn; pid $dir/gw/logs/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  insite_redis 127.0.0.1:$INSITE_REDIS_PORT;
  insite_gateway_jwt_secret $secret;
  proxy_cache_path $dir/gw/cache levels=1:2 keys_zone=insite_stocks:16m max_size=256m use_temp_path=off;
  upstream stocks { server 127.0.0.1:$wport; keepalive 64; }
  upstream stocks_warm { server 127.0.0.1:$hport; keepalive 64; }
  upstream static_peer { server 127.0.0.1:$sport; keepalive 64; }
  server { listen 127.0.0.1:$cport; keepalive_requests 100000;
$(loc "proxy_cache insite_stocks; proxy_cache_key \$uri\$is_args\$args; proxy_cache_lock on; proxy_cache_revalidate on;" stocks)
  }
  server { listen 127.0.0.1:$uport; keepalive_requests 100000;
$(loc "" stocks)
    location = /static.json { root $dir; default_type application/json; }
  }
  server { listen 127.0.0.1:$wuport; keepalive_requests 100000;
$(loc "" stocks_warm)
  }
  server { listen 127.0.0.1:$gport; keepalive_requests 100000;
$(loc "rewrite ^ /static.json break;" static_peer)
  }
  server { listen 127.0.0.1:$sport; keepalive_requests 100000;
    location = /static.json { root $dir; default_type application/json; }
  }
}
CONF
} >"$dir/gw/nginx.conf"
"$nginx" -p "$dir/gw/" -c "$dir/gw/nginx.conf" & pids+=($!)
sleep 1.5

cat >"$dir/bars.lua" <<LUA
math.randomseed(os.time())
request = function()
  local s = math.random(1, $nsym)
  local from = $base + math.random(0, $ndays - 1) * 86400
  return wrk.format("GET", "/api/v1/stocks/S" .. s .. "/bars?interval=1m&from=" .. from
                    .. "&to=" .. (from + 86400) .. "&limit=500")
end
LUA

code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" \
       "http://127.0.0.1:$uport/api/v1/stocks/S1/bars?interval=1m&from=$base&to=$((base + 86400))")
[ "$code" = 200 ] || { echo "bars answer $code" >&2; cat "$dir/stocks.log" "$dir/gw/logs/error.log" >&2; exit 1; }
curl -s -o "$dir/static.json" -H "Authorization: Bearer $token" \
     "http://127.0.0.1:$uport/api/v1/stocks/S1/bars?interval=1m&from=$base&to=$((base + 86400))"

# every page the load asks for, once, into the warm worker's cache
for sy in $(seq 1 "$nsym"); do
  for d in $(seq 0 $((ndays - 1))); do
    f=$((base + d * 86400))
    printf 'url = "http://127.0.0.1:%s/api/v1/stocks/S%s/bars?interval=1m&from=%s&to=%s&limit=500"\noutput = /dev/null\n' \
      "$hport" "$sy" "$f" $((f + 86400))
  done
done >"$dir/warm.curl"
curl -s -K "$dir/warm.curl"
stored=$(curl -s "http://127.0.0.1:$hport/metrics" | awk '/^insite_stocks_bars_cache_misses_total/ { print $2 }')

# CPU ticks (utime + stime) of processes (their threads included); a
# process gone meanwhile counts nothing
ticks() { local p; for p in "$@"; do cat "$p/stat" 2>/dev/null; done | awk '{ s += $14 + $15 } END { print s + 0 }'; }
children() { echo "/proc/$1"; pgrep -P "$1" | sed 's|^|/proc/|' || true; }
pg_pids() { children "$(head -1 "$INSITE_RUN_DIR/pg/data/postmaster.pid")"; }
ngx_pids() { children "$(cat "$dir/gw/logs/nginx.pid")"; }
redis_pid() { echo "/proc/$(cat "$INSITE_RUN_DIR/redis/redis.pid")"; }
snapshot() {  # worker pg nginx redis
  echo "$(ticks "/proc/${wpid[cold]}" "/proc/${wpid[warm]}") $(ticks $(pg_pids)) $(ticks $(ngx_pids)) $(ticks $(redis_pid))"
}
hz=$(getconf CLK_TCK)

to_ms() {
  awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /s$/) n *= 1000; printf "%.2f", n }'
}
printf '%-12s %9s %8s %8s %11s  %s\n' variant req/s p50_ms p99_ms "x static" \
  "cpu ms/req: worker pg nginx redis  ($nsym symbols x $ndays days, 1-day pages of 390 bars, $conns conns, $dur)"
declare -A rate
for v in static gw-static cold warm cached worker-cold worker-warm; do
  port=$uport; script=(-s "$dir/bars.lua"); url=
  case $v in
    static) url=/static.json; script=() ;;
    gw-static) port=$gport ;;
    warm) port=$wuport ;;
    cached) port=$cport ;;
    worker-cold) port=$wport ;;
    worker-warm) port=$hport ;;
  esac
  before=$(snapshot)
  out=$(wrk -t"$threads" -c"$conns" -d"$dur" --latency "${script[@]}" \
        -H "Authorization: Bearer $token" -H "X-User-Id: bench-user" "http://127.0.0.1:$port$url")
  after=$(snapshot)
  if echo "$out" | grep -q 'Non-2xx'; then echo "$v: non-2xx responses:"; echo "$out"; fi
  rps=$(echo "$out" | awk '/^Requests\/sec/ { print $2 }')
  reqs=$(echo "$out" | awk '/requests in/ { print $1 }')
  p50=$(to_ms "$(echo "$out" | awk '$1 == "50%" { print $2 }')")
  p99=$(to_ms "$(echo "$out" | awk '$1 == "99%" { print $2 }')")
  rate[$v]=$rps
  cpu=$(awk -v b="$before" -v a="$after" -v n="$reqs" -v hz="$hz" 'BEGIN {
    split(b, x, " "); split(a, y, " ");
    for (i = 1; i <= 4; i++) printf "%.3f ", (y[i] - x[i]) * 1000 / hz / (n > 0 ? n : 1) }')
  printf '%-12s %9s %8s %8s %11s  %s\n' "$v" "$rps" "$p50" "$p99" \
    "$(awk -v a="$rps" -v b="${rate[static]}" 'BEGIN { printf "%.3f", a / b }')" "$cpu"
done
hits=$(curl -s "http://127.0.0.1:$hport/metrics" | awk '/^insite_stocks_bars_cache_hits_total/ { print $2 }')
misses=$(curl -s "http://127.0.0.1:$hport/metrics" | awk '/^insite_stocks_bars_cache_misses_total/ { print $2 }')
echo "warm worker: $stored pages stored by the warm-up, then $hits hits and $((misses - stored)) misses"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); answer $(wc -c <"$dir/static.json") bytes; proxy buffers: ${PROXY_BUFFERS:-nginx defaults}"
n=$(grep -c 'buffered to a temporary file' "$dir/gw/logs/error.log" || true)
[ "$n" = 0 ] || echo "nginx: $n answers buffered to a temporary file (see PROXY_BUFFERS)"
