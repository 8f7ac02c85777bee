#!/usr/bin/env bash
# Fire-to-WebSocket latency of insite-notify at a steady RATE alerts/s
# (target: p99 < 50 ms at 1k alerts/s), measured where a user sees it: a
# WebSocket client on nginx's /ws (ngx_insite_ws, alert:<user> channels).
#
# USERS users with one price_above rule each over SYMBOLS symbols.  The
# generator (bench/notify/generator.py) hands crossings to Kafka (kcat,
# linger 5 ms, librdkafka's default) evenly spread, RATE alerts per second
# for SECONDS seconds, each update's market_time = the wall clock at its
# send.  The client (bench/notify/ws_client.mjs, one connection subscribed
# to every user's channel) subtracts the alert's fired_at (that market_time) from the
# frame's arrival: update produced -> frame received, which contains the
# fire -> delivery path.  The worker runs with log.level = debug, and
# bench/notify/stages.py prints from its stage lines where an alert waits.
# Also printed: the generator's achieved rate and lateness, the alerts
# received per second, and the alert row -> delivery record figures of the
# earlier rounds (PostgreSQL's clock).  Starts its own Redis, PostgreSQL,
# Kafka mock (scripts/services.sh) and nginx in a temp dir, fresh for each
# binary.  KEEP_LOG=<file> keeps the current run's worker log.
#
# With BASELINE=<git revision>, that revision's insite-notify is built in a
# temp dir and measured first under the same load, on its own migrations,
# and the ratios printed (BASELINE_BIN=<its binary, already built> skips
# the build and uses this tree's migrations).
#
#   [BASELINE=rev] bench/notify/latency.sh [USERS=1000] [SYMBOLS=1000] [SECONDS=10] [RATE=1000]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
users=${1:-1000} symbols=${2:-1000} secs=${3:-10} rate=${4:-1000}
make -s workers modules
export INSITE_RUN_DIR
top=$(mktemp -d /tmp/insite-notify-lat.XXXXXX)
chmod 711 "$top"   # PostgreSQL runs as postgres: it must reach $top/<run>/pg
pid=
base_src=
stop_nginx() {
  local f=$1/nginx/nginx.pid
  if [ -f "$f" ]; then kill "$(cat "$f")" 2>/dev/null || true; fi
  rm -f "$f"
}
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  for d in "$top"/*/; do
    [ -d "$d" ] || continue
    stop_nginx "$d"
    INSITE_RUN_DIR=$d scripts/services.sh stop >/dev/null 2>&1 || true
  done
  [ -n "${KEEP_LOG:-}" ] && cp "$top"/current/notify.log "$KEEP_LOG" 2>/dev/null; rm -rf "$top"
  [ -n "$base_src" ] && rm -rf "$base_src"
  return 0
}
trap cleanup EXIT
psql() { command psql "$INSITE_PG_DSN" -X -qtA -v ON_ERROR_STOP=1 "$@"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
bin=$ROOT/build/bin/insite-notify
migrations=$ROOT/workers/migrations   # the schema $bin was written for

# nginx with the WebSocket module on port $1: the client's side of the path
start_nginx() {
  local dir=$INSITE_RUN_DIR/nginx
  mkdir -p "$dir/tmp"
  {
    echo "load_module $ROOT/build/modules/ngx_http_insite_module.so;"
    echo "load_module $ROOT/build/modules/ngx_http_insite_ws_module.so;"
    echo "worker_processes 2; pid $dir/nginx.pid; error_log $dir/error.log warn;"
    echo "events { worker_connections 1024; }"
    echo "http { access_log off;"
    for t in client_body proxy fastcgi uwsgi scgi; do echo "  ${t}_temp_path $dir/tmp;"; done
    echo "  insite_redis 127.0.0.1:$INSITE_REDIS_PORT;"
    echo "  server { listen 127.0.0.1:$1;"
    echo "    location /ws { insite_ws; insite_ws_max_channels 100000; insite_ws_send_buffer 4m;"
    echo "                   insite_ws_subscribe_rate 100000r/s burst=100000; } } }"
  } >"$dir/nginx.conf"
  /usr/sbin/nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log"
}

# one measurement of $bin on fresh services (their own run dir $1: no
# rows, offsets or channels of another run): prints the JSON figures and
# the stage table
measure() {
  INSITE_RUN_DIR=$top/$1
  mkdir -p "$INSITE_RUN_DIR"
  INSITE_KAFKA_TOPICS="stock_updates:5 sentiment_updates:5 alerts:3" scripts/services.sh start >/dev/null
  set -a; . "$INSITE_RUN_DIR/services.env"; set +a
  local port wsport per expected
  port=$(free_port)
  wsport=$(free_port)
  start_nginx "$wsport"
  start_worker() {
    INSITE_NOTIFY_HTTP_PORT=$port INSITE_KAFKA_SPOOL_DIR=$INSITE_RUN_DIR/spool \
      INSITE_PG_MIGRATIONS_DIR=$migrations \
      INSITE_LOG_LEVEL=debug "$bin" > "$INSITE_RUN_DIR/notify.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do curl -fs "127.0.0.1:$port/healthz" >/dev/null && return; sleep 0.1; done
    echo "insite-notify did not start" >&2; cat "$INSITE_RUN_DIR/notify.log" >&2; exit 1
  }
  start_worker   # applies the migrations
  psql -c "INSERT INTO alert_rules (user_id, symbol, kind, params, cooldown_s) \
    SELECT 'u' || i, 'L' || (i % $symbols), 'price_above', '{\"price\":100}', 0 \
    FROM generate_series(1, $users) i" >/dev/null
  kill "$pid"; wait "$pid" 2>/dev/null || true
  start_worker   # loads the rules
  # wait until the consumer group has its partitions (a first message evaluated)
  echo 'WARMUP|{"event_type":"stock_update","event_id":"w","source_service":"bench","timestamp":"2026-12-02T00:00:00.000Z","version":"1.0","data":{"symbol":"WARMUP","price":1,"market_time":"2026-12-02T00:00:00.000Z"}}' |
    kcat -P -b "$INSITE_KAFKA_BOOTSTRAP" -t stock_updates -K '|' >&2
  for _ in $(seq 600); do
    [ "$(psql -c 'SELECT count(*) FROM notify_offsets')" -gt 0 ] && break
    sleep 0.1
  done
  per=$((users / symbols))
  expected=$(( rate * secs / per * per ))
  node --experimental-websocket bench/notify/ws_client.mjs "ws://127.0.0.1:$wsport/ws" "$users" \
    "$expected" "$INSITE_RUN_DIR/ready" 20 "$INSITE_RUN_DIR/arrivals" > "$INSITE_RUN_DIR/client.json" &
  local client=$!
  for _ in $(seq 300); do [ -f "$INSITE_RUN_DIR/ready" ] && break; sleep 0.1; done
  [ -f "$INSITE_RUN_DIR/ready" ] || { echo "the WebSocket client did not subscribe" >&2; exit 1; }
  python3 bench/notify/generator.py "$users" "$symbols" "$secs" "$rate" "$INSITE_RUN_DIR/gen.json" |
    kcat -P -b "$INSITE_KAFKA_BOOTSTRAP" -t stock_updates -K '|' -X linger.ms=5
  wait "$client"
  echo "generator: $(cat "$INSITE_RUN_DIR/gen.json")"
  echo "websocket client (update produced -> frame received): $(cat "$INSITE_RUN_DIR/client.json")"
  # where the WebSocket outcome is recorded: in the alert row since
  # 042_notify_fast_outcomes (a baseline before it: its delivery row)
  local rec="n.sent_at" from="notifications n WHERE n.websocket_status = 'delivered'"
  if [ "$(psql -c "SELECT count(*) FROM information_schema.columns WHERE table_name = 'notifications' AND column_name = 'sent_at'")" = 0 ] ||
     [ "$(psql -c "SELECT count(*) FROM notifications WHERE sent_at IS NOT NULL")" = 0 ]; then
    rec="d.updated_at"
    from="notification_deliveries d JOIN notifications n ON n.id = d.notification_id
    WHERE d.channel = 'websocket' AND d.status = 'delivered'"
  fi
  echo "alert row -> delivery record (PostgreSQL): $(psql -c "SELECT json_build_object('alerts', count(*),
    'p50_ms', round((percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM $rec - n.created_at)) * 1000)::numeric, 1),
    'p99_ms', round((percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM $rec - n.created_at)) * 1000)::numeric, 1),
    'max_ms', round((max(extract(epoch FROM $rec - n.created_at)) * 1000)::numeric, 1))
    FROM $from")"
  python3 bench/notify/stages.py "$INSITE_RUN_DIR/notify.log" "$INSITE_RUN_DIR/arrivals"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  pid=
  stop_nginx "$INSITE_RUN_DIR"
  scripts/services.sh stop >/dev/null 2>&1
}

# the client's figures out of a measure() output
client_json() { sed -n 's/^websocket client[^{]*//p' <<<"$1"; }

if [ -n "${BASELINE:-}" ]; then
  if [ -n "${BASELINE_BIN:-}" ]; then
    bin=$BASELINE_BIN
  else
    base_src=$(mktemp -d /tmp/insite-notify-base.XXXXXX)
    git archive "$BASELINE" | tar -x -C "$base_src"
    nice make -s -C "$base_src" -j2 build/bin/insite-notify >/dev/null
    bin=$base_src/build/bin/insite-notify
    migrations=$base_src/workers/migrations
  fi
  base=$(measure baseline)
  echo "== baseline $(git rev-parse --short "$BASELINE")"
  echo "$base"
  echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
  bin=$ROOT/build/bin/insite-notify
  migrations=$ROOT/workers/migrations
fi
cur=$(measure current)
echo "== current $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- workers || echo +changes)"
echo "$cur"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
if [ -n "${BASELINE:-}" ]; then
  python3 - "$(client_json "$base")" "$(client_json "$cur")" <<'PY'
import json, sys
b, c = json.loads(sys.argv[1]), json.loads(sys.argv[2])
for k in ("p50_ms", "p99_ms", "max_ms"):
    print(f"{k}: baseline {b[k]} / current {c[k]} = {float(b[k]) / max(float(c[k]), 0.1):.1f}x")
PY
fi
