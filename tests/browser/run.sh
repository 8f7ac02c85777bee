#!/usr/bin/env bash
# The browser tests: the JS client's unit tests (no browser) and the
# dashboard in Debian's headless Chromium against real nginx + Redis (the
# alerts test also PostgreSQL, the Kafka mock and insite-notify: make workers).
# Needs: scripts/deps.sh (chromium), make modules. Installs the npm packages
# (scripts/web-deps.sh, offline once installed). About 40 s.
#
#   UPDATE_SCREENSHOT=1   also refresh docs/dashboard.png
#   BROWSER_ARTIFACTS=dir where screenshots and frames.json go
#                         (default build/test-artifacts/browser)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
scripts/web-deps.sh
exec node --test --test-concurrency=1 tests/browser/client.test.mjs tests/browser/channel-names.test.mjs \
  tests/browser/dashboard.test.mjs tests/browser/history.test.mjs tests/browser/alerts.test.mjs
