#!/usr/bin/env bash
# The README's test command: every test of the project, from a clean clone.
#
# Installs what is missing (scripts/deps.sh), builds the nginx modules and the
# workers, starts Redis, PostgreSQL and a Kafka mock cluster on free loopback
# ports, runs the C unit tests (plain and under ASan/UBSan), the nginx suite
# under t/ with prove, and a short fuzzing pass; stops everything it started.
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
cleanup() {
  scripts/services.sh stop || true
  rm -rf "$run_dir"
}
trap cleanup EXIT

step "services"
scripts/services.sh start
# shellcheck disable=SC1091
. "$run_dir/services.env"
export INSITE_REDIS_PORT INSITE_PG_PORT INSITE_PG_DSN INSITE_KAFKA_BOOTSTRAP
export TEST_NGINX_REDIS_PORT TEST_NGINX_PG_PORT TEST_NGINX_KAFKA_BOOTSTRAP

step "C unit tests"
make -s -j"$(nproc)" unit

if [ -z "${SKIP_ASAN:-}" ]; then
  step "C unit tests under ASan + UBSan"
  ASAN_OPTIONS=detect_leaks=1 make -s -j"$(nproc)" SANITIZE=1 unit
fi

step "nginx suite (prove)"
mods=""
for m in ngx_http_insite_module ngx_http_insite_ws_module \
         ngx_http_insite_gateway_module ngx_http_insite_gdpr_module; do
  mods="$mods $root/build/modules/$m.so"
done
export TEST_NGINX_LOAD_MODULES="${mods# }"
export TEST_NGINX_BINARY=${TEST_NGINX_BINARY:-/usr/sbin/nginx}
export INSITE_ROOT=$root
# shellcheck disable=SC2086
prove -I t/lib ${PROVE_FLAGS:-} ${TEST_FILES:-t/}

# The README's second build path: the modules linked into nginx with
# --add-module (scripts/build-static-nginx.sh, cached under build/).  The
# gateway (t/30*), gdpr (t/40*) and ws suites run again against that binary,
# with no load_module lines.  Of the ws suite, the files that exercise the
# module's own code paths run (handshake, frames, protocol, resume,
# snapshot); t/104 (cluster), t/105 (reload) and t/107 (binary upgrade
# under load) are long and test nginx's process handling more than the
# module's linking, so they run against the dynamic build only.  With
# TEST_FILES, only the listed files of those suites run here.
static_suite="t/100-*.t t/101-*.t t/102-*.t t/103-*.t t/106-*.t t/30*.t t/40*.t"
if [ -z "${SKIP_STATIC:-}" ]; then
  step "static nginx (--add-module)"
  static_bin=$(scripts/build-static-nginx.sh)
  static_files=()
  for f in ${TEST_FILES:-t/}; do
    case $f in
      t|t/) static_files=($static_suite) ;;
      t/10[0-36]-*|t/30*|t/40*) static_files+=("$f") ;;
    esac
  done
  if [ "${#static_files[@]}" -gt 0 ]; then
    step "nginx suite against the static nginx (${#static_files[@]} files)"
    # shellcheck disable=SC2086
    TEST_NGINX_BINARY=$static_bin TEST_NGINX_LOAD_MODULES='' \
      prove -I t/lib ${PROVE_FLAGS:-} "${static_files[@]}"
  fi
fi

if [ -z "${SKIP_PACKAGE:-}" ]; then
  step "Debian packages: build, lintian, install test in a Debian 12 root"
  scripts/package.sh
  scripts/package-test.sh
fi

if [ -z "${SKIP_BROWSER:-}" ]; then
  step "browser tests (headless Chromium)"
  tests/browser/run.sh
fi

if [ -z "${SKIP_FUZZ:-}" ] && [ -x scripts/fuzz.sh ]; then
  step "fuzzing (${FUZZ_SECONDS:=10}s per target)"
  FUZZ_SECONDS=$FUZZ_SECONDS scripts/fuzz.sh
fi

if [ "$COVERAGE" = 1 ]; then
  step "coverage (lines and branches per folder; floors in scripts/coverage.sh)"
  scripts/coverage.sh report
fi

step "all tests passed"
