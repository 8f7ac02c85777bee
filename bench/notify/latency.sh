#!/usr/bin/env bash
# Fire-to-WebSocket latency of insite-notify at ~1k alerts/s (target p99 <
# 50 ms): USERS users with one price_above rule each over SYMBOLS symbols;
# every second each symbol crosses its level once, firing USERS/SYMBOLS
# alerts, for SECONDS seconds.  Latency = the WebSocket delivery's record
# time minus the alert row's commit time (both PostgreSQL's clock; the
# publish happens just before the record).  Starts its own Redis,
# PostgreSQL and Kafka mock (scripts/services.sh) in a temp dir, fresh for
# each binary.
#
# With BASELINE=<git revision>, that revision's insite-notify is built in a
# temp dir and measured first under the same load, and the ratios printed.
#
#   [BASELINE=rev] bench/notify/latency.sh [USERS=1000] [SYMBOLS=50] [SECONDS=10]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
users=${1:-1000} symbols=${2:-50} secs=${3:-10}
make -s workers
export INSITE_RUN_DIR
top=$(mktemp -d /tmp/insite-notify-lat.XXXXXX)
chmod 711 "$top"   # PostgreSQL runs as postgres: it must reach $top/<run>/pg
pid=
base_src=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  for d in "$top"/*/; do
    [ -d "$d" ] && INSITE_RUN_DIR=$d scripts/services.sh stop >/dev/null 2>&1 || true
  done
  rm -rf "$top"
  [ -n "$base_src" ] && rm -rf "$base_src"
  return 0
}
trap cleanup EXIT
psql() { command psql "$INSITE_PG_DSN" -X -qtA -v ON_ERROR_STOP=1 "$@"; }
bin=$ROOT/build/bin/insite-notify

# second s of the load: each symbol goes below its level and above it
batch() {
  python3 - "$symbols" "$1" "$2" <<'PY'
import json, sys, time
n, t0, s = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
for i in range(n):
    for k, p in ((0, 99.0), (1, 101.0)):
        ts = t0 + s + k * 0.5
        print(f"L{i}|" + json.dumps({"event_type": "stock_update", "event_id": f"b-{s}-{i}-{k}",
              "source_service": "bench", "timestamp": "2026-12-02T00:00:00.000Z", "version": "1.0",
              "data": {"symbol": f"L{i}", "price": p, "currency": "USD",
                       "market_time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + (".500Z" if k else ".000Z")}}))
PY
}

# one measurement of $bin on fresh services (their own run dir $1: no
# rows, offsets or channels of another run): prints the JSON figures
measure() {
  INSITE_RUN_DIR=$top/$1
  mkdir -p "$INSITE_RUN_DIR"
  INSITE_KAFKA_TOPICS="stock_updates:5 sentiment_updates:5 alerts:3" scripts/services.sh start >/dev/null
  set -a; . "$INSITE_RUN_DIR/services.env"; set +a
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  start_worker() {
    INSITE_NOTIFY_HTTP_PORT=$port INSITE_KAFKA_SPOOL_DIR=$INSITE_RUN_DIR/spool \
      INSITE_KAFKA_LINGER=5ms "$bin" > "$INSITE_RUN_DIR/notify.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do curl -fs "127.0.0.1:$port/healthz" >/dev/null && return; sleep 0.1; done
    echo "insite-notify did not start"; cat "$INSITE_RUN_DIR/notify.log"; exit 1
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
  t0=$(date +%s)
  for s in $(seq 0 $((secs - 1))); do
    batch "$t0" "$s" > "$INSITE_RUN_DIR/batch"
    kcat -P -b "$INSITE_KAFKA_BOOTSTRAP" -t stock_updates -K '|' < "$INSITE_RUN_DIR/batch"
    sleep 1
  done
  want=$((users * secs))
  for _ in $(seq 120); do
    done_n=$(psql -c "SELECT count(*) FROM notification_deliveries WHERE channel = 'websocket' AND status = 'delivered'")
    [ "$done_n" -ge "$want" ] && break
    sleep 1
  done
  psql -c "SELECT json_build_object('alerts', count(*),
    'window_s', round(extract(epoch FROM max(d.updated_at) - min(n.created_at))::numeric, 1),
    'p50_ms', round((percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM d.updated_at - n.created_at)) * 1000)::numeric, 1),
    'p99_ms', round((percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM d.updated_at - n.created_at)) * 1000)::numeric, 1),
    'max_ms', round((max(extract(epoch FROM d.updated_at - n.created_at)) * 1000)::numeric, 1))
    FROM notification_deliveries d JOIN notifications n ON n.id = d.notification_id
    WHERE d.channel = 'websocket' AND d.status = 'delivered'"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  pid=
  scripts/services.sh stop >/dev/null 2>&1
}

if [ -n "${BASELINE:-}" ]; then
  base_src=$(mktemp -d /tmp/insite-notify-base.XXXXXX)
  git archive "$BASELINE" | tar -x -C "$base_src"
  nice make -s -C "$base_src" -j2 build/bin/insite-notify >/dev/null
  bin=$base_src/build/bin/insite-notify
  base=$(measure baseline)
  echo "baseline $(git rev-parse --short "$BASELINE"): $base"
  bin=$ROOT/build/bin/insite-notify
fi
cur=$(measure current)
echo "current $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- workers || echo +changes): $cur"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
if [ -n "${BASELINE:-}" ]; then
  python3 - "$base" "$cur" <<'PY'
import json, sys
b, c = json.loads(sys.argv[1]), json.loads(sys.argv[2])
for k in ("p50_ms", "p99_ms", "max_ms"):
    print(f"{k}: baseline {b[k]} / current {c[k]} = {float(b[k]) / max(float(c[k]), 0.1):.1f}x")
PY
fi
