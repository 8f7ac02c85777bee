#!/usr/bin/env bash
# Installs the sentiment lexicons from the npm registry (they are data, not
# committed) and prints where they are, one KEY=path line each:
#
#   INSITE_ANALYTICS_VADER_LEXICON=.../vader-sentiment/vader_lexicon.txt
#   INSITE_ANALYTICS_AFINN_PATH=.../afinn-165-financialmarketnews/index.js
#   INSITE_ANALYTICS_VADER_JS=.../vader-sentiment (the JS port, bench only)
#
# Idempotent and offline-friendly: when the pinned versions are already in
# $NPM_PREFIX (default build/npm) nothing is fetched.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PREFIX=${NPM_PREFIX:-$ROOT/build/npm}
VADER_VERSION=1.1.3
AFINN_VERSION=3.0.0
mods=$PREFIX/node_modules

have() {  # package version
  [ -f "$mods/$1/package.json" ] &&
    grep -q "\"version\": *\"$2\"" "$mods/$1/package.json"
}

if ! have vader-sentiment $VADER_VERSION ||
   ! have afinn-165-financialmarketnews $AFINN_VERSION; then
  command -v npm >/dev/null || { echo "lexicons: npm not found" >&2; exit 1; }
  mkdir -p "$PREFIX"
  npm install --prefix "$PREFIX" --no-audit --no-fund --silent --save-exact \
    "vader-sentiment@$VADER_VERSION" \
    "afinn-165-financialmarketnews@$AFINN_VERSION" >&2
fi

vader=$mods/vader-sentiment/vader_lexicon.txt
afinn=$mods/afinn-165-financialmarketnews/index.js
for f in "$vader" "$afinn"; do
  [ -s "$f" ] || { echo "lexicons: $f missing after install" >&2; exit 1; }
done
echo "INSITE_ANALYTICS_VADER_LEXICON=$vader"
echo "INSITE_ANALYTICS_AFINN_PATH=$afinn"
echo "INSITE_ANALYTICS_VADER_JS=$mods/vader-sentiment"
