#!/usr/bin/env bash
# insite-notify's rule evaluation on one core: 100k rules over 500 symbols
# (every rule type, windows 1..46 min), random-walk updates; target
# >= 200k updates/s.  The engine is called directly (no Kafka, no
# PostgreSQL): this measures the symbol index and the rule checks.
#
#   bench/notify/run.sh [RULES] [SYMBOLS] [UPDATES]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
make -s build/lib/libinsite-notify.a build/lib/libinsite.a
bin=$(mktemp /tmp/insite-notify-bench.XXXXXX)
trap 'rm -f "$bin"' EXIT
cc -O2 -Iworkers/lib -Iworkers/notify -o "$bin" bench/notify/eval_bench.c \
  build/lib/libinsite-notify.a build/lib/libinsite.a \
  $(pkg-config --libs jansson icu-uc icu-i18n) -lstdc++ -lm
pin=(); command -v taskset >/dev/null && pin=(taskset -c 0)
out=$("${pin[@]}" "$bin" "${1:-100000}" "${2:-500}" "${3:-2000000}")
echo "$out"
python3 - "$out" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
ok = r["updates_per_sec"] >= 200000
print(f"updates/s {r['updates_per_sec']:.0f} ({r['us_per_update']:.2f} us each): "
      f"{'meets' if ok else 'BELOW'} the 200k/s target")
PY
