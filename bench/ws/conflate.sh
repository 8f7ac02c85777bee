#!/usr/bin/env bash
# Conflation bench (issue 18): 1k subscribers over 50 channels, 100
# publishes/s per channel, 10 % of the subscribers reading at 20 KB/s with a
# 4 KB receive window (scenario slow1k of bench/ws/run.sh), ours with
# insite_ws_conflate * against nchan's memory store, same run, listeners with
# sndbuf=16k on both.  The report has the fast readers' p99, how old the
# messages the slow readers read are, and how many were closed.
# Results: docs/ws-benchmark.md.
#
#   bench/ws/conflate.sh               BENCH_SECONDS (10), BENCH_SLOW_BPS (20000),
#                                      BENCH_LOWAT (ours: insite_ws_notsent_lowat),
#                                      BENCH_CONFLATE_AFTER (ours, 16k)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
BENCH_CONFLATE=1 BENCH_SCENARIOS=slow1k BENCH_SERVERS=${BENCH_SERVERS:-"ours nchan-mem"} \
  exec "$root/bench/ws/run.sh"
