#!/usr/bin/env bash
# WebSocket fan-out benchmark: ngx_http_insite_ws_module vs nchan, same nginx
# binary, same worker count, same load client, same run.  Issue 3, section
# "Benchmark"; results and how to read them: docs/ws-benchmark.md.
#
#   bench/ws/run.sh                  full scale, BENCH_SECONDS (10) per scenario
#   BENCH_QUICK=1 bench/ws/run.sh    everything at small scale, < 2 minutes
#   BENCH_50K=1 bench/ws/run.sh      only the 50,000-connection hold check
#   BENCH_CONFLATE=1 BENCH_SCENARIOS=slow1k bench/ws/run.sh
#                                    slow readers (bench/ws/conflate.sh):
#                                    listeners with sndbuf=16k on both
#                                    servers, ours with insite_ws_conflate *
#                                    (insite_ws_conflate_after
#                                    BENCH_CONFLATE_AFTER, default 16k)
#   BENCH_LOWAT=2k bench/ws/run.sh   ours with insite_ws_notsent_lowat 2k
#   BENCH_DEFLATE=1 BENCH_SCENARIOS=quote1k bench/ws/run.sh
#                                    permessage-deflate on both servers
#                                    (ours: insite_ws_deflate on; nchan:
#                                    nchan_deflate_message_for_websocket on)
#                                    and offered by every client; run it
#                                    with BENCH_DEFLATE=0 too for the bytes
#                                    and CPU without (bench/ws/deflate.sh
#                                    does both)
#   BENCH_PUB_H2=1 bench/ws/run.sh   the HTTP publishers speak HTTP/2
#                                    (h2c, prior knowledge) to a second
#                                    listener "listen ... http2" on both
#                                    servers (the subscribers keep the
#                                    HTTP/1.1 one: a plaintext http2 listen
#                                    speaks only HTTP/2); the pipelining
#                                    depth becomes concurrent streams per
#                                    connection, at most nginx's
#                                    http2_max_concurrent_streams (128)
#   BENCH_PUB_ASYNC=1 bench/ws/run.sh
#                                    ours' HTTP publishes carry "Prefer:
#                                    respond-async" (202 at once, no seq
#                                    in the answer; nchan answers 201/202
#                                    at once anyway)
#
# Other knobs: BENCH_SECONDS, BENCH_WORKERS (nginx workers, default 1),
# BENCH_SERVERS ("ours nchan-mem nchan-redis"), BENCH_SCENARIOS (names below),
# BENCH_PUB_H2=1 (above),
# BENCH_OURS_PUB=http|redis (how ours is published to at max rate: POST /pub,
# or EVALSHA of lua/publish.lua straight to Redis), BENCH_OUT (result folder).
#
# Layout: nginx workers on CPU 0, Redis + load client + publisher on CPU 1
# (the issue's "1 worker; client on the other core").  Everything started
# here is stopped on exit, error or Ctrl-C.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

QUICK=${BENCH_QUICK:-0}
RUN50K=${BENCH_50K:-0}
if [ "$QUICK" = 1 ]; then
  SECS=${BENCH_SECONDS:-2}
  N_IDLE=2000; N_FAN1=1000; N_FAN2=2000; N_CH=1000; N_FIX1=1000; N_FIX2=2000
  DRAIN=2
else
  SECS=${BENCH_SECONDS:-10}
  N_IDLE=10000; N_FAN1=1000; N_FAN2=10000; N_CH=10000; N_FIX1=1000; N_FIX2=10000
  DRAIN=5
fi
WORKERS=${BENCH_WORKERS:-1}
SERVERS=${BENCH_SERVERS:-ours nchan-mem nchan-redis}
SCENARIOS=${BENCH_SCENARIOS:-idle fan1k fan10k ch10k fixed1k fixed10k}
OURS_PUB=${BENCH_OURS_PUB:-http}
DEFLATE=${BENCH_DEFLATE:-0}
CONFLATE=${BENCH_CONFLATE:-0}
LOWAT=${BENCH_LOWAT:-}    # ours: insite_ws_notsent_lowat (e.g. 2k)
CONFLATE_AFTER=${BENCH_CONFLATE_AFTER:-16k}   # ours: insite_ws_conflate_after
SLOW_ARGS=()           # slow1k: 10 % of the subscribers read SLOW_BPS
SLOW_BPS=${BENCH_SLOW_BPS:-20000}
PUB_SIZE=100           # message size; quote1k: 800 quote-like bytes (-Q)
PUB_QUOTES=()
# max rate = as fast as the server goes while the publisher stays at most
# WIN messages ahead of what the subscribers got (closed loop): PUB_CONNS
# keep-alive connections (nginx answers pipelined requests one by one)
PUB_CONNS=${BENCH_PUB_CONNS:-4}
PUB_CONNS_CH=${BENCH_PUB_CONNS_CHANNELS:-32}
PUB_DEPTH_CH=${BENCH_PUB_DEPTH_CHANNELS:-64}   # requests pipelined per conn
PUB_H2=${BENCH_PUB_H2:-0}   # 1: HTTP publishers over HTTP/2 (h2c)
PUB_ASYNC=${BENCH_PUB_ASYNC:-0}  # 1: ours' HTTP publishes with Prefer: respond-async
H2_STREAMS_MAX=128          # nginx's http2_max_concurrent_streams default
WIN_FAN=${BENCH_WINDOW_FANOUT:-20}
WIN_CH=${BENCH_WINDOW_CHANNELS:-2000}
OUT=${BENCH_OUT:-$root/build/bench-ws/run-$(date +%Y%m%d-%H%M%S)}
BIN=$root/build/bench-ws
# the modules ours loads: a copy elsewhere lets a run measure one build
# while the tree is rebuilt (BENCH_MODULES=/tmp/base, with BENCH_NO_BUILD=1)
MODDIR=${BENCH_MODULES:-$root/build/modules}
RUNID=$(date +%s)

mkdir -p "$OUT"
PIDS=()            # clients and publishers still running
NGINX_DIRS=()      # nginx prefixes whose master we started
REDIS_PID=""

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for d in "${NGINX_DIRS[@]}"; do
    if [ -f "$d/nginx.pid" ]; then
      kill -TERM "$(cat "$d/nginx.pid")" 2>/dev/null || true
    fi
  done
  if [ -n "$REDIS_PID" ]; then kill -TERM "$REDIS_PID" 2>/dev/null || true; fi
  sleep 0.5
  for d in "${NGINX_DIRS[@]}"; do
    if [ -f "$d/nginx.pid" ]; then
      kill -KILL "$(cat "$d/nginx.pid")" 2>/dev/null || true
    fi
  done
  exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() {  # port
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  log "nothing listens on 127.0.0.1:$1"; return 1
}

# ------------------------------------------------------------------ build

build() {
  BUILD_NOTE="modules built by this run"
  if [ "${BENCH_NO_BUILD:-0}" = 1 ]; then
    BUILD_NOTE="modules NOT rebuilt (BENCH_NO_BUILD=1)"
  else
    log "building the modules (make modules) and the bench tools"
    # the tree is shared: a concurrent build can break this one; retry once
    if ! make -s modules >"$OUT/build.log" 2>&1 \
       && ! { sleep 5; make -s modules >"$OUT/build.log" 2>&1; }; then
      tail -15 "$OUT/build.log" >&2
      if ls "$root"/build/modules/ngx_http_insite_ws_module.so >/dev/null 2>&1; then
        BUILD_NOTE="WARNING: make modules FAILED; benchmarked the existing .so files"
        log "$BUILD_NOTE"
      else
        exit 1
      fi
    fi
  fi
  BUILD_NOTE="$BUILD_NOTE; ours from $MODDIR ($(stat -c %y "$MODDIR/ngx_http_insite_ws_module.so" | cut -d. -f1))"
  make -s -C bench/ws OUT="$BIN" >>"$OUT/build.log" 2>&1 || {
    cat "$OUT/build.log" >&2; exit 1; }
  [ -f /usr/lib/nginx/modules/ngx_nchan_module.so ] || {
    log "installing libnginx-mod-nchan"
    apt-get install -y libnginx-mod-nchan >>"$OUT/build.log" 2>&1; }
  command -v redis-server >/dev/null || apt-get install -y redis-server \
    >>"$OUT/build.log" 2>&1
}

# ------------------------------------------------------------------ servers

start_redis() {
  REDIS_PORT=$(free_port)
  taskset -c 1 redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' \
    --appendonly no --dir "$OUT" --logfile "$OUT/redis.log" \
    --client-output-buffer-limit "pubsub 256mb 64mb 60" &
  REDIS_PID=$!
  wait_port "$REDIS_PORT"
  log "redis on 127.0.0.1:$REDIS_PORT (pid $REDIS_PID)"
}

nchan_locations() {
  local z=""
  # compressed once per message, at publish time, like ours
  if [ "$DEFLATE" = 1 ]; then z=" nchan_deflate_message_for_websocket on;"; fi
  cat <<EOF
    location ~ ^/sub/(.+)\$ { nchan_subscriber websocket; nchan_channel_id \$1;$z }
    location ~ ^/pub/(.+)\$ { nchan_publisher http; nchan_channel_id \$1;$z }
EOF
}

# server name -> modules, http-level lines, locations
server_conf() {  # name
  case $1 in
  ours)
    echo "load_module $MODDIR/ngx_http_insite_module.so;"
    echo "load_module $MODDIR/ngx_http_insite_ws_module.so;"
    echo "@http insite_redis 127.0.0.1:$REDIS_PORT;"
    echo "@http insite_ws_max_connections 100000;"
    echo "@loc location /ws { insite_ws; insite_ws_send_buffer 1m; }"
    if [ "$DEFLATE" = 1 ]; then echo "@http insite_ws_deflate on;"; fi
    if [ "$CONFLATE" = 1 ]; then
      echo "@http insite_ws_conflate *;"
      echo "@http insite_ws_conflate_after $CONFLATE_AFTER;"
    fi
    if [ -n "$LOWAT" ]; then echo "@http insite_ws_notsent_lowat $LOWAT;"; fi
    echo "@loc location /pub { insite_ws_publish; }"
    echo "@loc location /status { insite_ws_status; }"
    ;;
  nchan-mem)
    echo "load_module /usr/lib/nginx/modules/ngx_nchan_module.so;"
    echo "@http nchan_max_reserved_memory 1024M;"
    nchan_locations | sed 's/^/@loc /'
    ;;
  nchan-redis)
    echo "load_module /usr/lib/nginx/modules/ngx_nchan_module.so;"
    echo "@http upstream nchan_redis { nchan_redis_server redis://127.0.0.1:$REDIS_PORT; }"
    echo "@http nchan_redis_pass nchan_redis;"
    echo "@http nchan_max_reserved_memory 1024M;"
    nchan_locations | sed 's/^/@loc /'
    ;;
  esac
}

write_nginx_conf() {  # name dir port workers [h2port]
  local name=$1 dir=$2 port=$3 workers=$4 h2port=${5:-} affinity conf
  conf=$(server_conf "$name")
  if [ "$workers" = 1 ]; then affinity="worker_cpu_affinity 01;"; else affinity=""; fi
  mkdir -p "$dir/tmp"
  {
    echo "worker_processes $workers;"
    echo "$affinity"
    echo "worker_rlimit_nofile 20000;"
    echo "pid $dir/nginx.pid;"
    # BENCH_TRACE=1: the trace lines of modules built with INSITE_WS_TRACE=1
    echo "error_log $dir/error.log $([ "${BENCH_TRACE:-0}" = 1 ] && echo notice || echo warn);"
    grep -v '^@' <<<"$conf"
    echo "events { worker_connections 19900; multi_accept on; }"
    echo "http {"
    echo "  access_log off;"
    echo "  keepalive_requests 100000000;"
    for t in client_body proxy fastcgi uwsgi scgi; do echo "  ${t}_temp_path $dir/tmp;"; done
    sed -n 's/^@http /  /p' <<<"$conf"
    echo "  server {"
    echo "    listen 127.0.0.1:$port backlog=4096 reuseport$([ "$CONFLATE" = 1 ] && echo ' sndbuf=16k');"
    # the publishers' HTTP/2 port (BENCH_PUB_H2=1), same locations
    if [ -n "$h2port" ]; then echo "    listen 127.0.0.1:$h2port http2;"; fi
    sed -n 's/^@loc /    /p' <<<"$conf"
    echo "  }"
    echo "}"
  } >"$dir/nginx.conf"
}

start_nginx() {  # name workers -> sets PORT_<name> (and H2PORT_<name>)
  local name=$1 workers=$2 dir port h2port="" var
  dir=$OUT/nginx-$name-w$workers
  port=$(free_port)
  if [ "$PUB_H2" = 1 ]; then h2port=$(free_port); fi
  write_nginx_conf "$name" "$dir" "$port" "$workers" "$h2port"
  NGINX_DIRS+=("$dir")
  /usr/sbin/nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" \
    2>>"$dir/error.log" || { cat "$dir/error.log" >&2; exit 1; }
  wait_port "$port"
  var=PORT_${name//-/_}
  printf -v "$var" '%s' "$port"
  if [ -n "$h2port" ]; then
    wait_port "$h2port"
    var=H2PORT_${name//-/_}
    printf -v "$var" '%s' "$h2port"
  fi
  log "$name: nginx on 127.0.0.1:$port${h2port:+ (HTTP/2 publishers: $h2port)}, $workers worker(s), prefix $dir"
}

workers_of() {  # name workers
  pgrep -P "$(cat "$OUT/nginx-$1-w$2/nginx.pid")"
}

rss_kb() {  # name workers: summed VmRSS of the workers
  local sum=0 v
  for w in $(workers_of "$1" "$2"); do
    v=$(awk '/^VmRSS:/ {print $2}' "/proc/$w/status")
    sum=$((sum + v))
  done
  echo "$sum"
}

cpu_ticks() {  # name workers: summed utime+stime of the workers
  local sum=0 v
  for w in $(workers_of "$1" "$2"); do
    v=$(awk '{print $14 + $15}' "/proc/$w/stat")
    sum=$((sum + v))
  done
  echo "$sum"
}

# ------------------------------------------------------------------ running

proto_of() { [ "$1" = ours ] && echo insite || echo nchan; }
port_of() { local v=PORT_${1//-/_}; echo "${!v}"; }
h2port_of() { local v=H2PORT_${1//-/_}; echo "${!v}"; }

# client processes: start_clients server tag conns channels nprocs
start_clients() {
  local srv=$1 tag=$2 conns=$3 chans=$4 nprocs=$5 k per src
  per=$(( (conns + nprocs - 1) / nprocs ))
  CLIENT_PIDS=()
  CLIENTS=$nprocs
  for k in $(seq 0 $((nprocs - 1))); do
    src=127.0.0.$((k + 1))
    # a process's connections all map onto the channels: with one channel
    # each process subscribes its share to it
    taskset -c 1 "$BIN/loadclient" -P "$(proto_of "$srv")" -p "$(port_of "$srv")" \
      -c "$per" -C "$chans" -n "$tag:" -s "$src" \
      -R "$OUT/$tag.ready.$k" -F "$OUT/$tag.final" -o "$OUT/$tag.client.$k.json" \
      -M "$OUT/$tag.shm" -j "$k" \
      -D "$DRAIN" -T $((SECS * 6 + 120)) -i "$tag.$k" \
      $([ "$DEFLATE" = 1 ] && echo -z) "${SLOW_ARGS[@]}" 2>"$OUT/$tag.client.$k.log" &
    CLIENT_PIDS+=($!)
    PIDS+=($!)
  done
  for k in $(seq 0 $((nprocs - 1))); do
    for _ in $(seq 1200); do
      [ -f "$OUT/$tag.ready.$k" ] && break
      kill -0 "${CLIENT_PIDS[$k]}" 2>/dev/null || { log "client $tag.$k died"; \
        tail -5 "$OUT/$tag.client.$k.log" >&2; return 1; }
      sleep 0.05
    done
  done
}

wait_clients() {
  for p in "${CLIENT_PIDS[@]}"; do wait "$p" || log "client $p exited with $?"; done
}

# publish: server tag channels rate seconds conns depth subscribers window
publish() {
  local srv=$1 tag=$2 chans=$3 rate=$4 secs=$5 conns=$6 depth=$7 subs=$8
  local window=$9 mode port flow=() h2=()
  port=$(port_of "$srv")
  # every HTTP publisher (max rate and fixed rate) goes the same way
  if [ "$PUB_H2" = 1 ]; then port=$(h2port_of "$srv"); h2=(-2); fi
  case $srv in
  ours)
    if [ "$OURS_PUB" = redis ]; then mode=insite-redis; port=$REDIS_PORT; h2=()
    else mode=insite-http; [ "$PUB_ASYNC" = 1 ] && h2+=(-A); fi ;;
  *) mode=nchan-http ;;
  esac
  if [ "$window" != 0 ]; then
    flow=(-M "$OUT/$tag.shm" -N "$CLIENTS" -f "$(awk -v a="$subs" -v b="$chans" 'BEGIN { print a / b }')" -W "$window")
  fi
  taskset -c 1 "$BIN/publisher" -m "$mode" -p "$port" -C "$chans" -n "$tag:" \
    -r "$rate" -d "$secs" -c "$conns" -w "$depth" -S "$PUB_SIZE" "${PUB_QUOTES[@]}" "${h2[@]}" \
    -L "$root/lua/publish.lua" -F "$OUT/$tag.final" -o "$OUT/$tag.pub.json" "${flow[@]}" \
    2>"$OUT/$tag.pub.log" &
  PIDS+=($!)
  wait $! || { log "publisher $tag failed:"; tail -5 "$OUT/$tag.pub.log" >&2; }
}

# one measured scenario on one server; writes $OUT/<tag>.meta.json
scenario() {  # server scen conns channels rate pubconns depth nprocs window
  local srv=$1 scen=$2 conns=$3 chans=$4 rate=$5 pconns=$6 depth=$7 nprocs=$8
  local window=$9
  local tag="$scen-$srv-$RUNID" t0 t1 c0 c1 r0 r1
  log "$scen on $srv: $conns subscribers, $chans channel(s), rate ${rate:-idle}"
  r0=$(rss_kb "$srv" "$WORKERS")
  start_clients "$srv" "$tag" "$conns" "$chans" "$nprocs"
  if [ "$scen" = idle ]; then
    sleep 2
    r1=$(rss_kb "$srv" "$WORKERS")
    : >"$OUT/$tag.final"
    wait_clients
    printf '{"scenario":"%s","server":"%s","tag":"%s","rss_before_kb":%s,"rss_after_kb":%s,"conns":%s}\n' \
      "$scen" "$srv" "$tag" "$r0" "$r1" "$conns" >"$OUT/$tag.meta.json"
    return
  fi
  c0=$(cpu_ticks "$srv" "$WORKERS"); t0=$(date +%s.%N)
  publish "$srv" "$tag" "$chans" "$rate" "$SECS" "$pconns" "$depth" "$conns" "$window"
  c1=$(cpu_ticks "$srv" "$WORKERS"); t1=$(date +%s.%N)
  wait_clients
  printf '{"scenario":"%s","server":"%s","tag":"%s","rate":%s,"cpu_pct":%s,"conns":%s,"clients":%s}\n' \
    "$scen" "$srv" "$tag" "$rate" \
    "$(awk -v a="$c0" -v b="$c1" -v s="$t0" -v e="$t1" -v hz="$(getconf CLK_TCK)" \
       'BEGIN { printf "%.0f", (b - a) / hz / (e - s) * 100 }')" \
    "$conns" "$nprocs" >"$OUT/$tag.meta.json"
}

run_scenario() {  # scen server
  case $1 in
  #                         subscribers channels rate conns depth clients window
  idle)     scenario "$2" idle     "$N_IDLE" 1       0   1 1  1 0 ;;
  fan1k)    scenario "$2" fan1k    "$N_FAN1" 1       0   "$PUB_CONNS" 16 1 "$WIN_FAN" ;;
  fan10k)   scenario "$2" fan10k   "$N_FAN2" 1       0   "$PUB_CONNS" 16 1 "$WIN_FAN" ;;
  ch10k)    scenario "$2" ch10k    "$N_CH"   "$N_CH" 0   "$PUB_CONNS_CH" "$PUB_DEPTH_CH" 1 "$WIN_CH" ;;
  fixed1k)  scenario "$2" fixed1k  "$N_FIX1" 1       100 1 16 1 0 ;;
  fixed10k) scenario "$2" fixed10k "$N_FIX2" 1       5   1 16 1 0 ;;
  # 800-byte quote-like messages: what permessage-deflate saves
  quote1k)  PUB_SIZE=800; PUB_QUOTES=(-Q)
            scenario "$2" quote1k  "$N_FIX1" 1       100 1 16 1 0
            PUB_SIZE=100; PUB_QUOTES=() ;;
  # 1k subscribers over 50 channels, 100 publishes/s each, 10 % of the
  # subscribers reading 20 KB/s (issue 18's conflation bench)
  slow1k)   SLOW_ARGS=(-L 10 -B "$SLOW_BPS")
            scenario "$2" slow1k   "$N_FIX1" 50      5000 4 16 1 0
            SLOW_ARGS=() ;;
  hold50k)  scenario "$2" hold50k  50000     1       5   1 16 5 0 ;;
  *) log "unknown scenario $1"; exit 2 ;;
  esac
}

machine() {
  {
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores"
    echo "memory: $(free -g | awk '/^Mem:/ {print $2}') GiB"
    echo "kernel: $(uname -r)"
    echo "nginx: $(/usr/sbin/nginx -v 2>&1 | cut -d/ -f2)"
    echo "nchan: $(dpkg-query -W -f='${Version}' libnginx-mod-nchan 2>/dev/null)"
    echo "redis: $(redis-server --version | awk '{print $3}')"
    echo "workers: $WORKERS; seconds per scenario: $SECS; quick: $QUICK; ours published via: $OURS_PUB; permessage-deflate: $DEFLATE; conflation: $CONFLATE"
    if [ "$PUB_H2" = 1 ]; then
      echo "max-rate publisher: HTTP/2 (h2c), $PUB_CONNS connections ($PUB_CONNS_CH for 10k channels, $(( PUB_DEPTH_CH < H2_STREAMS_MAX ? PUB_DEPTH_CH : H2_STREAMS_MAX )) streams per connection; fan-outs 16), window $WIN_FAN messages (fan-outs), $WIN_CH (10k channels); fixed-rate publishers HTTP/2 too"
    else
      echo "max-rate publisher: $PUB_CONNS connections ($PUB_CONNS_CH for 10k channels, $PUB_DEPTH_CH requests pipelined on each), window $WIN_FAN messages (fan-outs), $WIN_CH (10k channels)"
    fi
    echo "ours' HTTP publishes: $([ "$PUB_ASYNC" = 1 ] && echo "Prefer: respond-async (202)" || echo "201 with the seq")"
    echo "build: $BUILD_NOTE; git: $(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet -- ngx_insite_ws ngx_insite_core lua || echo ' + uncommitted module changes')"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  } >"$OUT/machine.txt"
  cat "$OUT/machine.txt" >&2
}

main() {
  build
  start_redis
  if [ "$RUN50K" = 1 ]; then
    WORKERS=${BENCH_WORKERS:-4}
    SCENARIOS=hold50k
  fi
  machine
  for srv in $SERVERS; do start_nginx "$srv" "$WORKERS"; done
  for scen in $SCENARIOS; do
    for srv in $SERVERS; do run_scenario "$scen" "$srv"; done
  done
  python3 "$root/bench/ws/report.py" "$OUT" | tee "$OUT/report.txt"
  for srv in $SERVERS; do
    if grep -E '\[(alert|emerg|crit)\]|signal [0-9]+' \
         "$OUT/nginx-$srv-w$WORKERS/error.log" >/dev/null; then
      log "$srv: nginx logged crashes or alerts:"
      grep -E '\[(alert|emerg|crit)\]|signal [0-9]+' \
        "$OUT/nginx-$srv-w$WORKERS/error.log" | head -5 >&2
    fi
  done
  log "results in $OUT"
}

main "$@"
