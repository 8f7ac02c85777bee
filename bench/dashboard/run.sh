#!/usr/bin/env bash
# The dashboard's frame budget: 50 symbols × 1 update/s for 10 s in headless
# Chromium against real nginx + Redis (tests/browser/dashboard.test.mjs,
# case c), with the budget enforced: ≥ 30 frames/s, p95 ≤ 50 ms, no long
# task ≥ 200 ms.  Run it on a quiet machine; the figures are printed
# ("browser: frames: …") and written to build/test-artifacts/browser/frames.json.
# Needs: make modules.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
scripts/web-deps.sh
FRAME_BUDGET=1 exec node --test --test-concurrency=1 tests/browser/dashboard.test.mjs
