#!/usr/bin/env bash
# Builds every tests/fuzz/fuzz_*.c as a libFuzzer target (clang, ASan + UBSan)
# into build/fuzz/ and runs each for FUZZ_SECONDS (default 60) on a copy of
# tests/fuzz/corpus/<name>/, so the checked-in seeds stay small and reviewed.
# Fails on the first target that crashes, leaks, times out or cannot build.
#
#   FUZZ_SECONDS=10 scripts/fuzz.sh              what CI runs
#   scripts/fuzz.sh ws_frame                     only fuzz_ws_frame.c
#   scripts/fuzz.sh jwk                          only fuzz_jwk.c (JWKS, claims)
#
# Crash inputs are left in build/fuzz/artifacts/<name>/; reproduce one with
#   build/fuzz/fuzz_<name> build/fuzz/artifacts/<name>/crash-...
set -euo pipefail

cd "$(dirname "$0")/.."

FUZZ_SECONDS=${FUZZ_SECONDS:-60}
CLANG=${CLANG:-clang}
OUT=${BUILD:-build}/fuzz

if ! command -v "$CLANG" >/dev/null 2>&1; then
  echo "fuzz: $CLANG not found; apt-get install clang" >&2
  exit 1
fi

# clang ships the libFuzzer runtime separately on Debian
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n)\n{ return 0; }\n' \
  > "$probe/p.c"
if ! "$CLANG" -fsanitize=fuzzer -o "$probe/p" "$probe/p.c" 2>/dev/null; then
  ver=$("$CLANG" -dumpversion | cut -d. -f1)
  echo "fuzz: $CLANG has no libFuzzer runtime;" \
       "apt-get install libclang-rt-${ver}-dev" >&2
  exit 1
fi

CFLAGS="-g -O1 -std=gnu11 -D_GNU_SOURCE -fno-omit-frame-pointer \
 -fsanitize=address,undefined -fno-sanitize-recover=undefined \
 -Wall -Wextra -Werror -Wno-unused-parameter"
LIBS="$(pkg-config --libs libcrypto jansson zlib hiredis 2>/dev/null || echo -lcrypto -ljansson -lz -lhiredis)"

mkdir -p "$OUT/obj"

# The plain-C sources the targets exercise (the Makefile's PURE_SRCS), built
# instrumented into an archive so a target links only the files it uses, and
# someone's half-written file elsewhere cannot stop this one from running.
incs=()
for d in ngx_insite_*/; do incs+=("-I${d%/}"); done
objs=()
for src in ngx_insite_*/insite_*.c; do
  [ -e "$src" ] || continue
  obj=$OUT/obj/$(basename "$src" .c).o
  # shellcheck disable=SC2086
  if "$CLANG" $CFLAGS -fsanitize=fuzzer-no-link "${incs[@]}" -c -o "$obj" "$src"; then
    objs+=("$obj")
  else
    echo "fuzz: warning: $src does not compile; left out" >&2
  fi
done
lib=$OUT/libinsite_fuzz.a
libs=()
rm -f "$lib"
if [ ${#objs[@]} -gt 0 ]; then
  ar rcs "$lib" "${objs[@]}"
  libs=("$lib")
fi

targets=()
if [ $# -gt 0 ]; then
  for t in "$@"; do targets+=("tests/fuzz/fuzz_${t#fuzz_}.c"); done
else
  for f in tests/fuzz/fuzz_*.c; do [ -e "$f" ] && targets+=("$f"); done
fi

if [ ${#targets[@]} -eq 0 ]; then
  echo "fuzz: no tests/fuzz/fuzz_*.c targets"
  exit 0
fi

failed=0

for src in "${targets[@]}"; do
  name=$(basename "$src" .c)
  short=${name#fuzz_}
  bin=$OUT/$name

  echo "fuzz: building $bin"
  # shellcheck disable=SC2086
  if ! "$CLANG" $CFLAGS -fsanitize=fuzzer "${incs[@]}" -o "$bin" "$src" \
       "${libs[@]}" $LIBS; then
    echo "fuzz: $name FAILED to build" >&2
    failed=1
    continue
  fi

  work=$OUT/corpus/$short
  art=$OUT/artifacts/$short
  rm -rf "$work"
  mkdir -p "$work" "$art"
  if [ -d "tests/fuzz/corpus/$short" ]; then
    cp -r "tests/fuzz/corpus/$short/." "$work/"
  fi
  seeds=$(find "$work" -type f | wc -l)

  echo "fuzz: running $name for ${FUZZ_SECONDS}s on $seeds seed(s)"
  log=$OUT/$name.log
  set +e
  ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1} \
  UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
  "$bin" -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 \
         -print_final_stats=1 \
         -artifact_prefix="$art/" "$work" >"$log" 2>&1
  rc=$?
  set -e

  # the last status line: executions, coverage edges, features, corpus
  grep -E '^#[0-9]+' "$log" | tail -1 || true
  grep -E '^stat::(number_of_executed_units|peak_rss_mb)' "$log" || true

  if [ $rc -ne 0 ] || grep -qE '^(==[0-9]+==ERROR|SUMMARY: )' "$log"; then
    echo "fuzz: $name FAILED (exit $rc); log $log, inputs in $art/" >&2
    grep -E 'ERROR|SUMMARY|Test unit written' "$log" | head -5 >&2 || true
    failed=1
  else
    echo "fuzz: $name ok"
  fi
done

exit $failed
