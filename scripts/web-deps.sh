#!/usr/bin/env bash
# npm packages of the dashboard and of the browser tests, from
# tests/browser/package.json + package-lock.json (exact versions):
#
#   lightweight-charts  the page's chart, copied to build/web/vendor/ and
#                       served by nginx at /vendor/ (no CDN at run time)
#   playwright-core     drives Debian's /usr/bin/chromium in tests/browser/
#
# Installed into build/web-deps/node_modules (build/ is not tracked).
# Idempotent and offline once installed: npm runs only when the lockfile
# changed since the last install or node_modules is missing.
#
#   WEB_DEPS_DIR=...   where to install (default build/web-deps)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
deps=${WEB_DEPS_DIR:-$root/build/web-deps}
vendor=$root/build/web/vendor
src=$root/tests/browser

if ! command -v npm >/dev/null 2>&1; then
  echo "web-deps: npm not found (Debian package: npm)" >&2
  exit 1
fi

mkdir -p "$deps" "$vendor"
stamp=$deps/.lock.sha256
want=$(sha256sum "$src/package.json" "$src/package-lock.json" | sha256sum | cut -d' ' -f1)

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
   && [ -d "$deps/node_modules/lightweight-charts" ] \
   && [ -d "$deps/node_modules/playwright-core" ]; then
  echo "web-deps: npm packages present ($deps)"
else
  echo "web-deps: installing lightweight-charts, playwright-core into $deps"
  cp "$src/package.json" "$src/package-lock.json" "$deps/"
  # playwright-core downloads no browser; we use Debian's chromium
  (cd "$deps" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 \
     npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" > "$stamp"
fi

lwc=$deps/node_modules/lightweight-charts/dist/lightweight-charts.standalone.production.js
if [ ! -f "$lwc" ]; then
  echo "web-deps: $lwc missing" >&2
  exit 1
fi
if ! cmp -s "$lwc" "$vendor/lightweight-charts.standalone.production.js"; then
  cp "$lwc" "$vendor/lightweight-charts.standalone.production.js"
  echo "web-deps: vendor/lightweight-charts.standalone.production.js updated"
fi
