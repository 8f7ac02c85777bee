#!/usr/bin/env bash
# Runs each C unit test binary given and prints one summary line.
set -uo pipefail
passed=0 failed=0 bad=()
for t in "$@"; do
  if "$t"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    bad+=("$t")
  fi
done
echo "unit: $passed passed, $failed failed"
[ "$failed" -eq 0 ] || { printf 'failed: %s\n' "${bad[@]}"; exit 1; }
