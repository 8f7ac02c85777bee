#!/usr/bin/env bash
# Issue 18, item 4: 10k channels x 1 subscriber through HTTP POST publish,
# ours vs nchan's memory store, at several publisher concurrencies, the same
# for both servers in each run (bench/ws/run.sh's ch10k scenario).
#
#   bench/ws/pubconc.sh                   connections 1 16 64, 64 pipelined
#   BENCH_PUB_CONC="1 16 64" BENCH_PUB_DEPTH_CHANNELS=1 bench/ws/pubconc.sh
#                                         one request in flight per connection
#   BENCH_PUB_H2=1 BENCH_PUB_DEPTH_CHANNELS=128 bench/ws/pubconc.sh
#                                         the publisher over HTTP/2 (h2c) to
#                                         both servers, 128 concurrent
#                                         streams per connection (nginx's
#                                         limit), instead of pipelining
#
# Every knob of run.sh applies (BENCH_SECONDS, BENCH_QUICK, BENCH_MODULES...).
# Prints one line per concurrency: deliveries/s of both and the ratio.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${BENCH_OUT:-$root/build/bench-ws/pubconc-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"
build=${BENCH_NO_BUILD:-0}
for c in ${BENCH_PUB_CONC:-1 16 64}; do
  BENCH_NO_BUILD=$build BENCH_OUT="$out/c$c" BENCH_PUB_CONNS_CHANNELS=$c \
    BENCH_SERVERS="${BENCH_SERVERS:-ours nchan-mem}" BENCH_SCENARIOS=ch10k \
    "$root/bench/ws/run.sh" >"$out/c$c.log" 2>&1 || {
      echo "run with $c connections failed: $out/c$c.log" >&2; tail -5 "$out/c$c.log" >&2; }
  build=1                    # built once
  python3 - "$root/bench/ws" "$out/c$c" "$c" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
import report
d, c = sys.argv[2], sys.argv[3]
f = {srv: report.figures(m) for (scen, srv), m in report.collect(d).items()}
load = open(d + "/machine.txt").read().split("load average at start: ")[1].split("\n")[0]
o, n = f.get("ours", {}), f.get("nchan-mem", {})
print("conns %3s: ours %7.0f deliveries/s (worker CPU %s%%, p99 %.0f ms, lost %s) | "
      "nchan-mem %7.0f (CPU %s%%, p99 %.0f ms, lost %s) | ours/nchan-mem %s | load %s"
      % (c, o.get("deliv_s", 0), o.get("cpu_pct"), o.get("p99_ms", 0), o.get("lost"),
         n.get("deliv_s", 0), n.get("cpu_pct"), n.get("p99_ms", 0), n.get("lost"),
         report.ratio(o.get("deliv_s", 0), n.get("deliv_s", 0)), load))
PY
done | tee "$out/summary.txt"
