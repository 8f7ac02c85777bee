#!/usr/bin/env bash
# The README's test command: every test of the project, from a clean clone.
#
# Installs what is missing (scripts/deps.sh), builds the nginx modules and the
# workers, starts Redis, PostgreSQL and a Kafka mock cluster on free loopback
# ports (two sets: the suite runs in two streams), runs the C unit tests
# (plain, and under ASan/UBSan in the background), the nginx suite under t/
# with prove, again against a static nginx, the packages, the browser tests
# and a short fuzzing pass; stops everything it started.
#
#   TEST_FILES="t/010-healthz.t"   run only these prove files
#   SKIP_ASAN=1 SKIP_FUZZ=1 SKIP_BROWSER=1 SKIP_PACKAGE=1   skip the
#                                  sanitizer build, the fuzzing pass, the
#                                  Chromium tests or the Debian packages
#   SKIP_STATIC=1                  skip the second run against a static nginx
#   COVERAGE=0                     build without gcov (see below)
set -euo pipefail

# --- coverage (docs/operations.md "Coverage", scripts/coverage.sh) ---------
# The build below is instrumented (make and scripts/build-modules.sh read
# COVERAGE), the unit, nginx and browser runs are counted, and the report
# with its floors comes last.  The ASan build, the static nginx and the
# packages are built without it.
export COVERAGE=${COVERAGE:-1}
# ---------------------------------------------------------------------------

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

step() { printf '\n==> %s\n' "$*"; }

# prove, its output also kept in $run_dir/prove-NAME.log for the digest
# below: CI shows only the last lines of a run, so a failure must be named
# there, not only where it happened.
run_prove() {
  local name=$1; shift
  # shellcheck disable=SC2086
  prove -I t/lib ${PROVE_FLAGS:-} "$@" 2>&1 | tee -a "$run_dir/prove-$name.log"
  return "${PIPESTATUS[0]}"
}
# Each failed prove run: its failed assertions (first lines of their
# diagnostics) and the summary lines naming the files and test numbers.
failure_digest() {
  local log
  for log in "$run_dir"/prove-*.log; do
    if [ ! -f "$log" ] || ! grep -q '^Result: FAIL' "$log"; then continue; fi
    echo "--- $(basename "$log" .log): failed assertions"
    grep -E '^(not ok|#   (Failed test|at |got|expected|  )|# (Looks like|.*(timeout|died|Died)))' "$log" | head -12
    echo "--- $(basename "$log" .log): summary"
    sed -n '/^Test Summary Report/,/^Files=/p' "$log" | grep -Ev '^(Test Summary|---|Files=)' | head -8
  done
}

step "dependencies"
scripts/deps.sh

step "build"
make -s -j"$(nproc)" modules workers
[ "$COVERAGE" != 1 ] || scripts/coverage.sh reset   # coverage: counts from zero

step "sentiment lexicons (npm)"
lex=$(scripts/lexicons.sh)
eval "export ${lex//$'\n'/ }"

run_dir=$(mktemp -d /tmp/insite-test.XXXXXX)
export INSITE_RUN_DIR=$run_dir
bg1_pid='' bg2_pid=''
cleanup() {
  # shellcheck disable=SC2086
  [ -z "$bg1_pid$bg2_pid" ] || kill $bg1_pid $bg2_pid 2>/dev/null || true
  [ ! -d "$run_dir/b" ] || INSITE_RUN_DIR=$run_dir/b scripts/services.sh stop > /dev/null || true
  scripts/services.sh stop > /dev/null || true
  rm -rf "$run_dir"
}
trap cleanup EXIT

# --- the nginx suite in two streams --------------------------------------
# A full run splits t/ into two prove runs side by side, each with its own
# Redis, PostgreSQL, Kafka mock and Test::Nginx servroot, so nothing but the
# two cores is shared: most of a test's time is spent waiting (timeouts,
# restarts, a worker's start), about 30% of the wall time is CPU.  Stream b
# (workers: collector 2xx, stocks 5xx, notify 6xx, GDPR 7xx, operations
# 8xx) prints its lines prefixed "[b] ".  The files in `alone` measure
# something a busy second stream would distort (20,000 connections through
# a Redis freeze, a binary upgrade under load, how long a request may wait
# on a dead Redis, a token 2 s from expiry): they run after both streams,
# by themselves.  With TEST_FILES, one stream, in the order given.
alone="t/107-* t/123-* t/303-* t/304-*"
is_alone() {
  local p
  for p in $alone; do
    # shellcheck disable=SC2254
    case $1 in $p) return 0 ;; esac
  done
  return 1
}
streams=1
[ -n "${TEST_FILES:-}" ] || streams=2
stream_a=() stream_b=() stream_alone=()
for f in ${TEST_FILES:-t/*.t}; do
  if [ "$streams" = 2 ] && is_alone "$f"; then
    stream_alone+=("$f")
    continue
  fi
  case $streams:$f in
    2:t/[25678]*) stream_b+=("$f") ;;
    *) stream_a+=("$f") ;;
  esac
done
# ---------------------------------------------------------------------------

step "services"
scripts/services.sh start
[ "$streams" = 1 ] || INSITE_RUN_DIR=$run_dir/b scripts/services.sh start
# shellcheck disable=SC1091
. "$run_dir/services.env"
export INSITE_REDIS_PORT INSITE_PG_PORT INSITE_PG_DSN INSITE_KAFKA_BOOTSTRAP
export TEST_NGINX_REDIS_PORT TEST_NGINX_PG_PORT TEST_NGINX_KAFKA_BOOTSTRAP

step "C unit tests"
make -s -j"$(nproc)" unit

# CPU work that does not need the suite runs in the background while the
# suite waits, at the lowest CPU priority so it takes only what the tests
# leave idle (two jobs; their output follows the suite):
#   1. the README's second build path, the modules linked into nginx with
#      --add-module (scripts/build-static-nginx.sh, cached under build/),
#      then the unit tests under ASan + UBSan (build/asan);
#   2. the Debian packages (built from a copy of the tree under build/deb-src),
#      lintian, their install test in a Debian 12 root (its own nginx and
#      worker on free ports), then the fuzzing pass (build/fuzz).
bg1_pid='' bg2_pid=''
step "background: static nginx + ASan unit tests; packages + fuzzing"
(
  set -e
  renice -n 19 -p "$BASHPID" > /dev/null     # and so every child
  if [ -z "${SKIP_STATIC:-}" ]; then
    echo "==> static nginx (--add-module)"
    scripts/build-static-nginx.sh > "$run_dir/static-nginx.tmp"
    mv "$run_dir/static-nginx.tmp" "$run_dir/static-nginx"
  fi
  if [ -z "${SKIP_ASAN:-}" ]; then
    echo "==> C unit tests under ASan + UBSan"
    ASAN_OPTIONS=detect_leaks=1 make -s -j"$(nproc)" SANITIZE=1 unit
  fi
) > "$run_dir/background-1.log" 2>&1 &
bg1_pid=$!
(
  set -e
  renice -n 19 -p "$BASHPID" > /dev/null     # and so every child
  if [ -z "${SKIP_PACKAGE:-}" ]; then
    echo "==> Debian packages: build, lintian, install test in a Debian 12 root"
    scripts/package.sh
    scripts/package-test.sh
  fi
  if [ -z "${SKIP_FUZZ:-}" ] && [ -x scripts/fuzz.sh ]; then
    echo "==> fuzzing (${FUZZ_SECONDS:=10}s per target)"
    FUZZ_SECONDS=$FUZZ_SECONDS scripts/fuzz.sh
  fi
) > "$run_dir/background-2.log" 2>&1 &
bg2_pid=$!

step "nginx suite (prove, $streams stream(s): ${#stream_a[@]} + ${#stream_b[@]} files)"
mods=""
for m in ngx_http_insite_module ngx_http_insite_ws_module \
         ngx_http_insite_gateway_module ngx_http_insite_gdpr_module; do
  mods="$mods $root/build/modules/$m.so"
done
export TEST_NGINX_LOAD_MODULES="${mods# }"
export TEST_NGINX_BINARY=${TEST_NGINX_BINARY:-/usr/sbin/nginx}
export INSITE_ROOT=$root
b_pid=
if [ "${#stream_b[@]}" -gt 0 ]; then
  (
    # shellcheck disable=SC1091
    . "$run_dir/b/services.env"
    export INSITE_REDIS_PORT INSITE_PG_PORT INSITE_PG_DSN INSITE_KAFKA_BOOTSTRAP
    export TEST_NGINX_REDIS_PORT TEST_NGINX_PG_PORT TEST_NGINX_KAFKA_BOOTSTRAP
    export INSITE_RUN_DIR=$run_dir/b TEST_NGINX_SERVROOT=$root/t/servroot-b
    # shellcheck disable=SC2086
    run_prove b "${stream_b[@]}" | sed -u 's/^/[b] /'
  ) &
  b_pid=$!
fi
rc_a=0 rc_b=0 rc_bg1=0 rc_bg2=0
if [ "${#stream_a[@]}" -gt 0 ]; then
  run_prove a "${stream_a[@]}" || rc_a=$?
fi

wait "$bg1_pid" || rc_bg1=$?
bg1_pid=
step "background job 1 (static nginx build, ASan unit tests): exit $rc_bg1"
cat "$run_dir/background-1.log"

# The static nginx runs the gateway (t/30*), gdpr (t/40*) and ws suites
# again, with no load_module lines (in stream a, while b goes on).  Of the
# ws suite, the files that exercise the module's own code paths run
# (handshake, frames, protocol, resume, snapshot); t/104 (cluster), t/105
# (reload) and t/107 (binary upgrade under load) are long and test nginx's
# process handling more than the module's linking, so they run against the
# dynamic build only.  With TEST_FILES, only the listed files of those
# suites run here.
rc_static=0
if [ -z "${SKIP_STATIC:-}" ] && [ -s "$run_dir/static-nginx" ]; then
  static_files=()
  for f in "${stream_a[@]}"; do
    case $f in
      t|t/) static_files+=(t/100-*.t t/101-*.t t/102-*.t t/103-*.t t/106-*.t t/30*.t t/40*.t) ;;
      t/10[0-36]-*|t/30*|t/40*) static_files+=("$f") ;;
    esac
  done
  if [ "${#static_files[@]}" -gt 0 ]; then
    step "nginx suite against the static nginx (${#static_files[@]} files)"
    TEST_NGINX_BINARY=$(cat "$run_dir/static-nginx") TEST_NGINX_LOAD_MODULES='' \
      run_prove static "${static_files[@]}" || rc_static=$?
  fi
fi

if [ -n "$b_pid" ]; then
  wait "$b_pid" || rc_b=$?
fi

# the files that run by themselves, then those of them the static nginx runs
rc_alone=0
if [ "${#stream_alone[@]}" -gt 0 ]; then
  step "nginx suite, files that run alone (${#stream_alone[@]})"
  run_prove alone "${stream_alone[@]}" || rc_alone=$?
  static_files=()
  for f in "${stream_alone[@]}"; do
    case $f in t/10[0-36]-*|t/30*|t/40*) static_files+=("$f") ;; esac
  done
  if [ -z "${SKIP_STATIC:-}" ] && [ -s "$run_dir/static-nginx" ] && [ "${#static_files[@]}" -gt 0 ]; then
    step "... and against the static nginx (${#static_files[@]})"
    TEST_NGINX_BINARY=$(cat "$run_dir/static-nginx") TEST_NGINX_LOAD_MODULES='' \
      run_prove alone-static "${static_files[@]}" || rc_alone=$?
  fi
fi

wait "$bg2_pid" || rc_bg2=$?
bg2_pid=
step "background job 2 (packages, fuzzing): exit $rc_bg2"
cat "$run_dir/background-2.log"

if [ "$rc_a$rc_b$rc_static$rc_alone$rc_bg1$rc_bg2" != 000000 ]; then
  failure_digest >&2
  echo "FAILED: prove stream a $rc_a, stream b $rc_b, static nginx suite $rc_static," \
       "files alone $rc_alone, background job 1 $rc_bg1, job 2 $rc_bg2" >&2
  exit 1
fi
step "nginx suite (both streams), static nginx, ASan, packages, fuzzing: passed"

if [ -z "${SKIP_BROWSER:-}" ]; then
  step "browser tests (headless Chromium)"
  tests/browser/run.sh
fi

if [ "$COVERAGE" = 1 ]; then
  step "coverage (lines and branches per folder; floors in scripts/coverage.sh)"
  scripts/coverage.sh report
fi

step "all tests passed"
