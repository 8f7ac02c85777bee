#!/usr/bin/env bash
# VADER throughput on one core: insite-analytics (C) next to the npm
# vader-sentiment (JS) on the same corpus (tests/vader/corpus.py: templates +
# the shared fixtures' posts), plain VADER on both sides; prints the ratio.
# Then correlation of 50 symbols x 1 year of minute bars (generated data,
# 98,280 bars each; bench/analytics/corr_bench.c), target < 1 s.
#
#   bench/analytics/run.sh [ROUNDS_C] [ROUNDS_JS] [CORR_SYMBOLS]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
rc=${1:-50} rjs=${2:-5} corr_k=${3:-50}

eval "$(scripts/lexicons.sh)"
export INSITE_ANALYTICS_VADER_LEXICON INSITE_ANALYTICS_FINANCE=false INSITE_ANALYTICS_ENTITIES=false
make -s build/bin/insite-analytics 2>&1 | grep -v 'overriding recipe\|ignoring old recipe' || true
corpus=$(mktemp /tmp/insite-vader-corpus.XXXXXX)
corr_bin=$(mktemp /tmp/insite-corr-bench.XXXXXX)
trap 'rm -f "$corpus" "$corr_bin"' EXIT
/usr/bin/python3 tests/vader/corpus.py > "$corpus"

pin=(); command -v taskset >/dev/null && pin=(taskset -c 0)
c=$("${pin[@]}" build/bin/insite-analytics --bench "$rc" < "$corpus" 2>/dev/null)
js=$("${pin[@]}" node bench/analytics/vader_js.js "$INSITE_ANALYTICS_VADER_JS" "$rjs" < "$corpus")
echo "corpus: $(wc -l < "$corpus") sentences"
echo "C  (insite-analytics): $c"
echo "JS (vader-sentiment):  $js"
python3 - "$c" "$js" <<'PY'
import json, sys
c, js = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"ratio C/JS: {c['per_sec'] / js['per_sec']:.1f}x  ({c['per_sec']:,} vs {js['per_sec']:,} sentences/s on one core)")
PY

make -s build/lib/libinsite-analytics.a build/lib/libinsite.a 2>&1 | grep -v 'overriding recipe\|ignoring old recipe' || true
cc -O2 -Iworkers/lib -o "$corr_bin" bench/analytics/corr_bench.c \
  build/lib/libinsite-analytics.a build/lib/libinsite.a -lm
corr=$("${pin[@]}" "$corr_bin" "$corr_k" 5)
echo "correlation: $corr"
/usr/bin/python3 - "$corr" <<'PY'
import json, sys
c = json.loads(sys.argv[1])
ok = "OK" if c["best_s"] < 1 else "OVER TARGET"
print(f"correlation {c['symbols']} symbols x {c['bars_per_symbol']:,} minute bars "
      f"({c['pairs']} pairs, {c['aligned_returns']:,} aligned returns): "
      f"{c['best_s']:.3f} s best, {c['mean_s']:.3f} s mean on one core (target < 1 s: {ok})")
PY
