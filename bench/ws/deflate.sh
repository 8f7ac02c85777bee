#!/usr/bin/env bash
# permessage-deflate bench: 100 publishes/s of 800-byte quote-like messages
# to 1k subscribers (scenario quote1k of bench/ws/run.sh), ours and nchan's
# memory store, once without and once with permessage-deflate (ours:
# insite_ws_deflate on; nchan: nchan_deflate_message_for_websocket on; every
# client offers it).  Prints each run's table (bytes on the wire per
# delivery, worker CPU per 1k deliveries, p99) and the ratios with/without.
# Results and how to read them: docs/ws-benchmark.md.
#
#   bench/ws/deflate.sh                 BENCH_SECONDS (10) per run
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${BENCH_OUT:-$root/build/bench-ws/deflate-$(date +%Y%m%d-%H%M%S)}
servers=${BENCH_SERVERS:-ours nchan-mem}

for z in 0 1; do
  BENCH_DEFLATE=$z BENCH_SCENARIOS=quote1k BENCH_SERVERS="$servers" \
    BENCH_OUT="$out/deflate-$z" "$root/bench/ws/run.sh"
done

cd "$root"
python3 - "$out" $servers <<'PY'
import json, sys, glob, os
out, servers = sys.argv[1], sys.argv[2:]
sys.path.insert(0, os.path.join(os.getcwd(), 'bench', 'ws'))
import report
fig = {}
for z in ("0", "1"):
    res = report.collect(os.path.join(out, "deflate-" + z))
    for (scen, srv), m in res.items():
        fig[(srv, z)] = report.figures(m)
print("\n### permessage-deflate, with / without, same machine\n")
print("| | bytes/delivery off | on | on/off | CPU ms/1k deliveries off | on | on/off | p99 ms off | on |")
print("|---|---|---|---|---|---|---|---|---|")
for s in servers:
    a, b = fig.get((s, "0")), fig.get((s, "1"))
    if not a or not b:
        continue
    r = lambda k: "%.2f" % (b[k] / a[k]) if a[k] else "-"
    print("| %s | %.0f | %.0f | %s | %.2f | %.2f | %s | %.2f | %.2f |" % (
        s, a["wire_per_deliv"], b["wire_per_deliv"], r("wire_per_deliv"),
        a["cpu_ms_per_1k"], b["cpu_ms_per_1k"], r("cpu_ms_per_1k"),
        a["p99_ms"], b["p99_ms"]))
PY
