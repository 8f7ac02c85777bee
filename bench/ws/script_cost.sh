#!/usr/bin/env bash
# What one publish costs Redis: lua/publish.lua (sequence + history +
# PUBLISH, the one script nginx and the workers call) against a bare
# PUBLISH of the same payload, on the same redis-server in the same run.
#
#   bench/ws/script_cost.sh            200,000 publishes over 10,000 channels
#   N=500000 CHANNELS=100 HISTORY=100 bench/ws/script_cost.sh
#
# redis-server on CPU 1, redis-benchmark on CPU 0 (32 clients, 16 commands
# pipelined each), so Redis is the bottleneck and shares its core with
# nothing.  Prints publishes/s of both and their ratio, then Redis' own
# microseconds per call (INFO commandstats) of EVALSHA and of each command
# the script makes: where a publish's time goes inside Redis.  The message
# is a ~110-byte quote; the framed history member is ~250 bytes.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
N=${N:-200000} CHANNELS=${CHANNELS:-10000} HISTORY=${HISTORY:-1000}
command -v redis-benchmark >/dev/null || { echo "redis-benchmark missing (redis-tools)" >&2; exit 1; }
work=$(mktemp -d /tmp/insite-bench-script.XXXXXX)
port=$(perl -MIO::Socket::INET -e 'print IO::Socket::INET->new(Listen=>1,LocalAddr=>"127.0.0.1:0")->sockport')
cleanup() { redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
taskset -c 1 redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
  --daemonize yes --dir "$work" --logfile "$work/redis.log" >/dev/null
for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done

data='{"symbol":"AAPL","price":187.43,"change":1.25,"volume":1234567,"ts":"2026-12-03T10:00:00.000Z"}'
ts=2026-12-03T10:00:00.000Z
sha=$(redis-cli -p "$port" script load "$(cat "$root/lua/publish.lua")")

# runs one command N times; prints requests/s
bench() {
  redis-cli -p "$port" flushall >/dev/null
  redis-cli -p "$port" config resetstat >/dev/null
  taskset -c 0 redis-benchmark -p "$port" -n "$N" -r "$CHANNELS" -c 32 -P 16 -q "$@" 2>&1 \
    | tr '\r' '\n' | awk '/requests per second/ { for (i = 1; i <= NF; i++) if ($(i + 1) == "requests") print $i }' | tail -1
}
# microseconds per call of each command in INFO commandstats, one per line
per_call() {
  redis-cli -p "$port" info commandstats | tr -d '\r' \
    | sed -n 's/^cmdstat_\([a-z|]*\):calls=\([0-9]*\),usec=[0-9]*,usec_per_call=\([0-9.]*\).*/\1 \2 \3/p' \
    | awk '$1 !~ /config|script|ping|flushall|info/ { printf "  %-18s %8.2f us  (%d calls)\n", $1, $3, $2 }'
}

echo "# redis $(redis-server --version | awk '{print $3}'); $N publishes over $CHANNELS channels, history $HISTORY; load $(cut -d' ' -f1-3 /proc/loadavg)"
# key and argument layout as insite_channel_publish_args() builds them
script=$(bench EVALSHA "$sha" 2 'insite:{c:__rand_int__}:seq' 'insite:{c:__rand_int__}:hist' \
  c:__rand_int__ stock_update "$data" "$ts" "$HISTORY" 0123456789abcdef 'insite:pub:c' 86400)
stats=$(per_call)
bare=$(bench PUBLISH 'insite:pub:c' "1 0123456789abcdef
{\"type\":\"stock_update\",\"channel\":\"c:1\",\"seq\":1,\"ts\":\"$ts\",\"data\":$data}")
printf 'publish.lua   %10.0f publishes/s\n' "$script"
printf 'bare PUBLISH  %10.0f publishes/s\n' "$bare"
awk -v a="$script" -v b="$bare" 'BEGIN { printf "ratio         %10.3f  (publish.lua / bare PUBLISH)\n", a / b }'
echo "# inside Redis, per call, during the publish.lua run:"
echo "$stats"
