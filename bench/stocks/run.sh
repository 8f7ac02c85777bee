#!/usr/bin/env bash
# insite-stocks bars through nginx with the gateway (not run by the suite).
#
#   bench/stocks/run.sh [duration=5s] [connections=20] [threads=2]
#
# Seeds SYMBOLS (default 20) symbols x DAYS (default 30) trading days of
# 1-minute bars (390 a day) into a PostgreSQL of its own, starts
# insite-stocks and one nginx (2 workers) with the gateway (JWT, breaker,
# Redis per-user limit never refusing) on two ports, one with proxy_cache
# (as nginx.conf.example) and one without, then runs wrk with a Lua script
# asking for a random symbol's random day of 1-minute bars
# (/bars?interval=1m&from=D&to=D+1d, one page) and prints req/s, p50, p99.
# In the same run, as the peer the ratios are taken against: nginx serving
# one such answer as a static file (same bytes, no gateway), and the worker
# straight (no nginx).  THREADS_WORKER sets stocks.http_threads (default 8).
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
wport=$(free_port); cport=$(free_port); uport=$(free_port)

INSITE_PG_DSN=$INSITE_PG_DSN INSITE_REDIS_PORT=$INSITE_REDIS_PORT INSITE_STOCKS_HTTP_PORT=$wport \
  INSITE_STOCKS_HTTP_THREADS=${THREADS_WORKER:-8} \
  INSITE_PG_MIGRATIONS_DIR=$root/workers/migrations INSITE_LOG_LEVEL=warn \
  "$root/build/bin/insite-stocks" >"$dir/stocks.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -fs -o /dev/null "http://127.0.0.1:$wport/healthz" && break; sleep 0.1; done

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
loc() {
  cat <<LOC
    location /api/v1/stocks {
      insite_gateway_service stocks; insite_gateway_jwt on;
      insite_gateway_breaker failures=5 window=30s recovery=60s half_open=3;
      insite_gateway_rate_limit zone=api key=\$insite_user_id rate=1000000r/s burst=1000000 backend=redis fail=open;
      proxy_http_version 1.1; proxy_set_header Connection ""; proxy_set_header X-User-Id \$insite_user_id;
      $1
      proxy_pass http://stocks;
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
  server { listen 127.0.0.1:$cport; keepalive_requests 100000;
$(loc "proxy_cache insite_stocks; proxy_cache_key \$uri\$is_args\$args; proxy_cache_lock on; proxy_cache_revalidate on;")
  }
  server { listen 127.0.0.1:$uport; keepalive_requests 100000;
$(loc "")
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

to_ms() {
  awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /s$/) n *= 1000; printf "%.2f", n }'
}
printf '%-10s %10s %10s %10s  (%s symbols x %s days of 1m bars, 1-day pages of 390 bars, %s conns, %s)\n' \
  variant req/s p50_ms p99_ms "$nsym" "$ndays" "$conns" "$dur"
declare -A rate
for v in static worker uncached cached; do
  port=$uport; script=(-s "$dir/bars.lua"); url=
  case $v in
    cached) port=$cport ;;
    worker) port=$wport ;;
    static) url=/static.json; script=() ;;
  esac
  out=$(wrk -t"$threads" -c"$conns" -d"$dur" --latency "${script[@]}" \
        -H "Authorization: Bearer $token" -H "X-User-Id: bench-user" "http://127.0.0.1:$port$url")
  if echo "$out" | grep -q 'Non-2xx'; then echo "$v: non-2xx responses:"; echo "$out"; fi
  rps=$(echo "$out" | awk '/^Requests\/sec/ { print $2 }')
  p50=$(to_ms "$(echo "$out" | awk '$1 == "50%" { print $2 }')")
  p99=$(to_ms "$(echo "$out" | awk '$1 == "99%" { print $2 }')")
  rate[$v]=$rps
  printf '%-10s %10s %10s %10s  %s\n' "$v" "$rps" "$p50" "$p99" \
    "$(awk -v a="$rps" -v b="${rate[static]}" 'BEGIN { printf "%.3f x static", a / b }')"
done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); answer $(wc -c <"$dir/static.json") bytes"

