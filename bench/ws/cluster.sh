#!/usr/bin/env bash
# Redis Cluster mode of the WebSocket benchmark (issue 17, "Benchmark"):
# on real clusters of 1, 3 and 6 shards (one replica each), in one run with
# the same nginx build, load client and publisher:
#   - publishes/s through insite_ws_publish (POST /pub, bench/ws/publisher at
#     max rate, closed loop on the deliveries) and deliveries/s to
#     WebSocket subscribers (bench/ws/loadclient), without and with
#     `insite_ws_publish_replicas 1` (WAIT 1), alternating per round;
#   - each master's CPU (utime + stime of its redis-server from /proc, % of
#     one core) during each measurement;
#   - nginx workers' RSS with BENCH_IDLE idle subscribers vs none (on the
#     1-shard cluster), for the per-connection memory.
# Ends with the ratios: 3 shards / 1, 6 shards / 1, WAIT 1 / no WAIT.
#
#   bench/ws/cluster.sh                    shards "1 3 6", 2 rounds of 5 s
#   BENCH_SHARDS="1 3" BENCH_SECONDS=3 BENCH_ROUNDS=1 bench/ws/cluster.sh
#
# Other knobs: BENCH_WORKERS (nginx workers, 2), BENCH_CHANNELS (1000),
# BENCH_SUBS (subscribers during the throughput runs, 2000: 2 a channel),
# BENCH_CONNS / BENCH_DEPTH (publisher connections, requests in flight on
# each: 8 / 16), BENCH_WINDOW (messages the publisher may be ahead of the
# deliveries, 4000), BENCH_IDLE (idle subscribers for the memory figure,
# 5000; 0 skips it).  "wsubs": nginx workers subscribed to a channel (mean
# of 20), the copies of each publish Redis sends.  Results: docs/redis-cluster.md, "Benchmark".
# Everything started here is stopped on exit, error or Ctrl-C.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

SECS=${BENCH_SECONDS:-5}
ROUNDS=${BENCH_ROUNDS:-2}
SHARDS=${BENCH_SHARDS:-"1 3 6"}
WORKERS=${BENCH_WORKERS:-2}
CHANNELS=${BENCH_CHANNELS:-1000}
SUBS=${BENCH_SUBS:-2000}
CONNS=${BENCH_CONNS:-8}
DEPTH=${BENCH_DEPTH:-16}
WINDOW=${BENCH_WINDOW:-4000}
IDLE=${BENCH_IDLE:-5000}
NGINX=${NGINX:-/usr/sbin/nginx}
BIN=$root/build/bench-ws
MODS=${BENCH_MODULES:-$root/build/modules}

make -s -C bench/ws OUT="$BIN" >/dev/null
[ -f "$MODS/ngx_http_insite_ws_module.so" ] || { echo "build the modules first (make modules)" >&2; exit 1; }

tmp=$(mktemp -d /tmp/insite-bench-cluster.XXXXXX)
pids=()          # redis-servers, load clients, publishers
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [ -f "$tmp/nginx.pid" ] && kill -TERM "$(cat "$tmp/nginx.pid")" 2>/dev/null || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "${BENCH_KEEP:-}" ] || rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "[cluster-bench $(date +%H:%M:%S)] $*" >&2; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
cli() { local p=$1; shift; redis-cli -p "$p" "$@"; }

# waits until COMMAND's output (run every 0.1 s) matches PATTERN, at most
# DEADLINE seconds (the build machine is loaded: deadlines are generous)
wait_for() {  # deadline pattern command...
  local deadline=$(( $(date +%s) + $1 )) pat=$2; shift 2
  while [ "$(date +%s)" -lt "$deadline" ]; do
    # shellcheck disable=SC2254   # $pat is a glob on purpose
    case "$("$@" 2>/dev/null)" in $pat) return 0 ;; esac
    sleep 0.1
  done
  return 1
}

# starts 2*n nodes, n masters + n replicas; their ports in $ports.
# n = 1: `redis-cli --cluster create` wants 3 masters, so the one master
# takes every slot itself and the other node is made its replica.
start_cluster() {
  local n=$1 i port bus dir id
  ports=(); buses=()
  for i in $(seq 1 $((2 * n))); do
    # the bus port is picked too: port + 10000 may be above 65535
    port=$(free_port); bus=$(free_port); dir=$tmp/c$n-$i; mkdir -p "$dir"
    redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --save '' --appendonly no \
      --cluster-enabled yes --cluster-config-file "$dir/nodes.conf" --cluster-port "$bus" \
      --cluster-node-timeout 5000 --logfile "$dir/redis.log" \
      --client-output-buffer-limit "pubsub 256mb 64mb 60" &
    pids+=($!)
    ports+=("$port"); buses+=("$bus")
  done
  for port in "${ports[@]}"; do
    wait_for 30 PONG cli "$port" PING || { log "redis on $port did not start"; exit 1; }
  done
  if [ "$n" = 1 ]; then
    cli "${ports[0]}" CLUSTER ADDSLOTSRANGE 0 16383 >/dev/null
    cli "${ports[1]}" CLUSTER MEET 127.0.0.1 "${ports[0]}" "${buses[0]}" >/dev/null
    id=$(cli "${ports[0]}" CLUSTER MYID)
    # the replica can follow the master once it knows it (gossip)
    wait_for 60 "*$id*" cli "${ports[1]}" CLUSTER NODES || { log "MEET did not complete"; exit 1; }
    wait_for 60 OK cli "${ports[1]}" CLUSTER REPLICATE "$id" || { log "REPLICATE failed"; exit 1; }
  else
    local nodes=()
    for port in "${ports[@]}"; do nodes+=("127.0.0.1:$port"); done
    redis-cli --cluster create "${nodes[@]}" \
      --cluster-replicas 1 --cluster-yes >"$tmp/create-$n.log" 2>&1 \
      || { tail -5 "$tmp/create-$n.log" >&2; exit 1; }
  fi
  for port in "${ports[@]}"; do
    wait_for 120 "*cluster_state:ok*" cli "$port" CLUSTER INFO \
      || { log "$n shards: node $port not cluster_state:ok"; exit 1; }
  done
  for port in "${ports[@]}"; do
    if [ "$(cli "$port" ROLE | head -1)" = slave ]; then
      wait_for 120 "*master_link_status:up*" cli "$port" INFO replication \
        || { log "$n shards: replica $port not in sync"; exit 1; }
    fi
  done
  # every node must see n masters, each with its replica
  for port in "${ports[@]}"; do
    wait_for 120 "*cluster_known_nodes:$((2 * n))*" cli "$port" CLUSTER INFO \
      || { log "$n shards: node $port does not know every node"; exit 1; }
  done
}

stop_cluster() {
  local port
  for port in "${ports[@]}"; do cli "$port" SHUTDOWN NOSAVE >/dev/null 2>&1 || true; done
}

masters() {   # "port:pid" of each master among $ports
  local port
  for port in "${ports[@]}"; do
    if [ "$(cli "$port" ROLE | head -1)" = master ]; then
      echo "$port:$(cli "$port" INFO server | sed -n 's/^process_id:\([0-9]*\).*/\1/p' | tr -d '\r')"
    fi
  done
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

start_nginx() {  # seeds port_plain port_wait1
  local seeds=$1 pa=$2 pb=$3
  mkdir -p "$tmp/ngx"
  cat >"$tmp/nginx.conf" <<CONF
load_module $MODS/ngx_http_insite_module.so;
load_module $MODS/ngx_http_insite_ws_module.so;
worker_processes $WORKERS;
worker_rlimit_nofile 20000;
error_log $tmp/error.log warn;
pid $tmp/nginx.pid;
events { worker_connections 19000; multi_accept on; }
http {
    access_log off;
    keepalive_requests 100000000;
    client_body_temp_path $tmp/ngx;
    insite_redis_cluster $seeds connect_timeout=300ms command_timeout=300ms;
    insite_ws_max_connections 100000;
    server {
        listen 127.0.0.1:$pa backlog=4096;
        location /ws { insite_ws; insite_ws_send_buffer 1m; }
        location /pub { insite_ws_publish; }
    }
    server {
        listen 127.0.0.1:$pb backlog=4096;
        location /ws { insite_ws; insite_ws_send_buffer 1m; }
        location /pub { insite_ws_publish; insite_ws_publish_replicas 1 100ms; }
    }
}
CONF
  rm -f "$tmp/nginx.pid"
  "$NGINX" -p "$tmp/" -c "$tmp/nginx.conf" -e "$tmp/error.log" || { tail -5 "$tmp/error.log" >&2; exit 1; }
  wait_for 30 "20[01]" curl -s -o /dev/null -w '%{http_code}' -X POST \
    --data '{"hello":1}' "http://127.0.0.1:$pa/pub?channel=warmup" \
    || { log "nginx: POST /pub never answered 201/200"; tail -5 "$tmp/error.log" >&2; exit 1; }
}

stop_nginx() {
  local pid; pid=$(cat "$tmp/nginx.pid")
  kill -QUIT "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}

nginx_rss_kb() {
  local sum=0 w
  for w in $(pgrep -P "$(cat "$tmp/nginx.pid")"); do
    sum=$((sum + $(awk '/^VmRSS:/ {print $2}' "/proc/$w/status")))
  done
  echo "$sum"
}

# load client in the background: tag port conns; waits until subscribed
start_client() {
  local tag=$1 port=$2 conns=$3
  "$BIN/loadclient" -P insite -p "$port" -c "$conns" -C "$CHANNELS" -n "$tag:" \
    -R "$tmp/$tag.ready" -F "$tmp/$tag.final" -o "$tmp/$tag.client.json" \
    -M "$tmp/$tag.shm" -j 0 -D 2 -T $((SECS * 4 + 120)) -i "$tag" 2>"$tmp/$tag.client.log" &
  client_pid=$!
  pids+=("$client_pid")
  for _ in $(seq 1200); do
    [ -f "$tmp/$tag.ready" ] && return 0
    kill -0 "$client_pid" 2>/dev/null || break
    sleep 0.05
  done
  log "client $tag not ready"; tail -5 "$tmp/$tag.client.log" >&2; exit 1
}

# idle subscribers: workers' RSS without and with them
idle_memory() {  # port
  local r0 r1 ready
  r0=$(nginx_rss_kb)
  start_client idle "$1" "$IDLE"
  sleep 2
  r1=$(nginx_rss_kb)
  : >"$tmp/idle.final"
  wait "$client_pid" || true
  ready=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["ready_peak"])' "$tmp/idle.client.json")
  echo "idle: $ready WebSocket subscribers ($CHANNELS channels, $WORKERS workers): workers' RSS $r0 kB -> $r1 kB, $(( (r1 - r0) * 1024 / (ready > 0 ? ready : 1) )) bytes a connection"
  echo "$(( (r1 - r0) * 1024 / (ready > 0 ? ready : 1) ))" >"$tmp/per_conn_bytes"
}

# nginx workers subscribed to a channel (PUBSUB SHARDNUMSUB of the first 20
# channels of a tag, on their owners): how many copies Redis sends a publish
worker_subs() {  # tag
  local i x v sum=0
  for i in $(seq 0 19); do
    for x in $mp; do          # only the owner counts its subscribers
      v=$(cli "${x%:*}" PUBSUB SHARDNUMSUB "insite:{$1:$i}:pub" | tail -1)
      case $v in ''|*[!0-9]*) ;; *) sum=$((sum + v)) ;; esac
    done
  done
  awk -v s="$sum" 'BEGIN { printf "%.1f", s / 20 }'
}

# one measurement: shards mode round port; appends to $tmp/results
measure() {
  local n=$1 mode=$2 r=$3 port=$4 tag x t1 cpus="" sum=0
  tag="s$n-$mode-$r"
  start_client "$tag" "$port" "$SUBS"
  wsubs=$(worker_subs "$tag")
  declare -A t0=()
  for x in $mp; do t0[$x]=$(cpu_ticks "${x#*:}"); done
  "$BIN/publisher" -m insite-http -p "$port" -C "$CHANNELS" -n "$tag:" -r 0 -d "$SECS" \
    -c "$CONNS" -w "$DEPTH" -F "$tmp/$tag.final" -o "$tmp/$tag.pub.json" \
    -M "$tmp/$tag.shm" -N 1 -f "$(awk -v a="$SUBS" -v b="$CHANNELS" 'BEGIN { print a / b }')" \
    -W "$WINDOW" 2>"$tmp/$tag.pub.log" || { log "publisher $tag failed"; tail -3 "$tmp/$tag.pub.log" >&2; exit 1; }
  for x in $mp; do
    t1=$(cpu_ticks "${x#*:}")
    cpus+=" $(awk -v a="${t0[$x]}" -v b="$t1" -v hz="$hz" -v s="$SECS" 'BEGIN{printf "%.0f", (b-a)/hz/s*100}')"
  done
  wait "$client_pid" || log "client $tag exited with $?"
  python3 - "$tmp/$tag.pub.json" "$tmp/$tag.client.json" "$n" "$mode" "$r" "$cpus" "$wsubs" <<'PY' | tee -a "$tmp/results"
import json, sys
p = json.load(open(sys.argv[1])); c = json.load(open(sys.argv[2]))
n, mode, r, cpus, wsubs = sys.argv[3:8]
cpu = [int(x) for x in cpus.split()]
print("%-6s %-6s %-5s %12d %12d %9d %6d %6d %5d %5s   %s (sum %d)" % (
    n, mode, r, p["published_per_s"], c["deliveries_per_s"], p["rtt_us"]["p99"],
    p.get("failed", 0), c["lost"], c["resets"], wsubs, " ".join(map(str, cpu)), sum(cpu)))
PY
}

echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores; nginx workers: $WORKERS; git $(git rev-parse --short HEAD)"
echo "publisher: $CONNS conns x $DEPTH in flight, window $WINDOW; $SUBS subscribers on $CHANNELS channels; ${SECS}s a measurement, $ROUNDS round(s)"
: >"$tmp/results"
for n in $SHARDS; do
  log "starting a cluster of $n shard(s) + $n replica(s)"
  start_cluster "$n"
  mp=$(masters)
  pa=$(free_port); pb=$(free_port)
  start_nginx "$(printf '127.0.0.1:%s ' "${ports[@]}")" "$pa" "$pb"
  if [ "$n" = "$(echo $SHARDS | cut -d' ' -f1)" ] && [ "$IDLE" -gt 0 ]; then
    idle_memory "$pa"
  fi
  [ "$n" = "$(echo $SHARDS | cut -d' ' -f1)" ] && \
    printf '%-6s %-6s %-5s %12s %12s %9s %6s %6s %5s %5s   %s\n' shards mode round publishes/s deliveries/s p99_us failed lost reset wsubs "master CPU % (each)"
  for r in $(seq 1 "$ROUNDS"); do
    # alternate which mode goes first
    if [ $((r % 2)) = 1 ]; then order="plain wait1"; else order="wait1 plain"; fi
    for mode in $order; do
      port=$pa; [ "$mode" = wait1 ] && port=$pb
      measure "$n" "$mode" "$r" "$port"
    done
  done
  if grep -E '\[(alert|emerg|crit)\]|signal [0-9]+' "$tmp/error.log" >/dev/null; then
    log "nginx logged alerts:"; grep -E '\[(alert|emerg|crit)\]|signal [0-9]+' "$tmp/error.log" | head -5 >&2
  fi
  stop_nginx
  stop_cluster
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$tmp/results" <<'PY'
import sys, collections
pub = collections.defaultdict(list); dl = collections.defaultdict(list); cpu = collections.defaultdict(list)
for line in open(sys.argv[1]):
    f = line.split()
    n, mode = int(f[0]), f[1]
    pub[n, mode].append(int(f[3])); dl[n, mode].append(int(f[4]))
    cpu[n, mode].append(int(line.split("(sum ")[1].rstrip(")\n")))
mean = lambda v: sum(v) / len(v) if v else 0
ratio = lambda a, b: "%.2f" % (a / b) if b else "n/a"
shards = sorted({n for n, _ in pub})
for mode in ("plain", "wait1"):
    for n in shards:
        print("mean %-5s %d shard(s): %7.0f publishes/s %7.0f deliveries/s, masters' CPU %3.0f%% of a core in all (%.0f%% a shard)"
              % (mode, n, mean(pub[n, mode]), mean(dl[n, mode]), mean(cpu[n, mode]), mean(cpu[n, mode]) / n))
base = shards[0]
for n in shards[1:]:
    for mode in ("plain", "wait1"):
        print("ratio %d/%d shards (%s): publishes %s, deliveries %s"
              % (n, base, mode, ratio(mean(pub[n, mode]), mean(pub[base, mode])),
                 ratio(mean(dl[n, mode]), mean(dl[base, mode]))))
for n in shards:
    print("ratio WAIT1/no WAIT, %d shard(s): publishes %s, deliveries %s"
          % (n, ratio(mean(pub[n, "wait1"]), mean(pub[n, "plain"])),
             ratio(mean(dl[n, "wait1"]), mean(dl[n, "plain"]))))
PY
