#!/usr/bin/env bash
# VADER throughput on one core: insite-analytics (C) next to the npm
# vader-sentiment (JS) on the same corpus (tests/vader/corpus.py: templates +
# the shared fixtures' posts), plain VADER on both sides; prints the ratio.
#
#   bench/analytics/run.sh [ROUNDS_C] [ROUNDS_JS]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
rc=${1:-50} rjs=${2:-5}

eval "$(scripts/lexicons.sh)"
export INSITE_ANALYTICS_VADER_LEXICON INSITE_ANALYTICS_FINANCE=false INSITE_ANALYTICS_ENTITIES=false
make -s build/bin/insite-analytics 2>&1 | grep -v 'overriding recipe\|ignoring old recipe' || true
corpus=$(mktemp /tmp/insite-vader-corpus.XXXXXX)
trap 'rm -f "$corpus"' EXIT
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
