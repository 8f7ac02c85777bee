#!/usr/bin/env bash
# Mutation testing: do the tests catch what they claim to?
#
#   scripts/mutation.sh            every mutant in tests/mutants/
#   scripts/mutation.sh 07 12      only mutants 07 and 12
#   KEEP=1 scripts/mutation.sh 07  leave the scratch copy (MUTATION_DIR) as is
#
# Each tests/mutants/NN-name.mutant names one file, an exact piece of its text
# (one or more whole lines), the replacement, and the tests that must fail
# with it (t/*.t files for prove, test_* for C unit tests in tests/unit/):
#
#   file: ngx_insite_ws/ngx_insite_ws_channel.c
#   tests: t/120-ws-gap.t
#   why: a gap of one message is not noticed by the channel
#   --- original
#       if (seq > ch->last_seq + 1) {
#   --- replacement
#       if (seq > ch->last_seq + 2) {
#
# Exact text, not a diff with line numbers, so a mutant still applies after
# unrelated edits of the same file; when the original text is not found
# exactly once, the mutant is "n/a" (update it).
#
# The tree is copied once (without build/ and .git) to MUTATION_DIR
# (default /tmp/insite-mutation-$USER), built there, and Redis, PostgreSQL and
# the Kafka mock are started once (scripts/services.sh).  Per mutant: apply,
# rebuild (incremental), run the named tests, restore.  A mutant is "caught"
# when a named test fails; "build" when the mutated tree does not compile and
# "no-test" when a named test does not exist (both: fix the mutant).  Not part of scripts/test.sh: it is slow.
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
scratch=${MUTATION_DIR:-/tmp/insite-mutation-${USER:-$(id -un)}}
mutants=$root/tests/mutants

mkdir -p "$scratch"
# a copy of the sources (tar keeps modification times: what did not change
# is not rebuilt); build/ stays between runs
tar -C "$root" --exclude=./build --exclude=./.git -cf - . | tar -C "$scratch" -xf -
cd "$scratch"

log=$scratch/mutation.log
: > "$log"
say() { printf '%s\n' "$*" | tee -a "$log" >&2; }

build() { make -s -j"${JOBS:-2}" modules workers >>"$log" 2>&1; }

say "mutation: building the unmutated tree in $scratch"
build || { say "mutation: the unmutated tree does not build (see $log)"; exit 1; }

lex=$(scripts/lexicons.sh 2>>"$log") && eval "export ${lex//$'\n'/ }"
run_dir=$(mktemp -d /tmp/insite-mutation-run.XXXXXX)
export INSITE_RUN_DIR=$run_dir
cleanup() { scripts/services.sh stop >>"$log" 2>&1 || true; rm -rf "$run_dir"; }
trap cleanup EXIT
scripts/services.sh start >>"$log" 2>&1 || { say "mutation: services did not start"; exit 1; }
# shellcheck disable=SC1091
. "$run_dir/services.env"
export INSITE_REDIS_PORT INSITE_PG_PORT INSITE_PG_DSN INSITE_KAFKA_BOOTSTRAP
export TEST_NGINX_REDIS_PORT TEST_NGINX_PG_PORT TEST_NGINX_KAFKA_BOOTSTRAP
mods=""
for m in ngx_http_insite_module ngx_http_insite_ws_module \
         ngx_http_insite_gateway_module ngx_http_insite_gdpr_module; do
  mods="$mods $scratch/build/modules/$m.so"
done
export TEST_NGINX_LOAD_MODULES="${mods# }"
export TEST_NGINX_BINARY=${TEST_NGINX_BINARY:-/usr/sbin/nginx}
export INSITE_ROOT=$scratch

# field NAME of a mutant file ("file: x" lines)
field() { sed -n "s/^$2: *//p" "$1" | head -1; }

# apply FILE.mutant: replaces the original text (exactly one occurrence) in
# the scratch copy; exit 2 when the text is not there exactly once
apply() {
  python3 - "$1" <<'PY'
import sys, re
m = open(sys.argv[1], encoding='utf-8').read()
target = re.search(r'^file: *(.+)$', m, re.M).group(1).strip()
parts = re.split(r'^--- (original|replacement)\n', m, flags=re.M)
sec = dict(zip(parts[1::2], parts[2::2]))
orig, repl = sec['original'], sec['replacement']
src = open(target, encoding='utf-8').read()
if src.count(orig) != 1:
    sys.exit(2)
open(target, 'w', encoding='utf-8').write(src.replace(orig, repl, 1))
PY
}

# the named tests; 0 when all passed (the mutant survived)
run_tests() {
  local t prove_files=() rc=0
  for t in "$@"; do
    case $t in
      t/*) prove_files+=("$t") ;;
      test_*) [ -f "tests/unit/$t.c" ] || { say "mutation: no tests/unit/$t.c"; return 3; }
              make -s "build/tests/$t" >>"$log" 2>&1 || return 1
              "build/tests/$t" >>"$log" 2>&1 || rc=1 ;;
      *) say "mutation: unknown test $t" ; return 3 ;;
    esac
  done
  [ "$rc" -eq 0 ] || return 1
  if [ ${#prove_files[@]} -gt 0 ]; then
    prove -I t/lib "${prove_files[@]}" >>"$log" 2>&1 || return 1
  fi
  return 0
}

want=("$@")
selected() {
  local n=$1 w
  [ ${#want[@]} -eq 0 ] && return 0
  for w in "${want[@]}"; do [ "$n" = "$w" ] && return 0; done
  return 1
}

total=0 caught=0 survived=0 na=0 rows=()
for m in "$mutants"/*.mutant; do
  name=$(basename "$m" .mutant)
  selected "${name%%-*}" || continue
  file=$(field "$m" file)
  read -r -a tests <<< "$(field "$m" tests)"
  say "--- $name ($file; ${tests[*]})"
  if [ -f "$file" ]; then
    cp -p "$file" "$file.orig-mutation"
    apply "$m"
    rc=$?
  else
    rc=2
  fi
  if [ "$rc" -ne 0 ]; then
    result=n/a
  elif ! build; then
    result=build
  else
    run_tests "${tests[@]}"
    case $? in
      0) result=SURVIVED ;;
      3) result=no-test ;;
      *) result=caught ;;
    esac
  fi
  if [ -f "$file.orig-mutation" ]; then
    mv -f "$file.orig-mutation" "$file"
    touch "$file"                     # newer than the mutated build
  fi
  total=$((total + 1))
  case $result in
    caught) caught=$((caught + 1)) ;;
    SURVIVED) survived=$((survived + 1)) ;;
    *) na=$((na + 1)) ;;
  esac
  rows+=("$(printf '%-40s %-9s %s' "$name" "$result" "${tests[*]}")")
  say "    $result"
done
build || true                         # leave the scratch build unmutated

printf '\n%-40s %-9s %s\n' mutant result tests
printf '%s\n' "${rows[@]}"
applied=$((caught + survived))
if [ "$applied" -gt 0 ]; then
  printf '\nscore: %d/%d caught (%d%%), %d n/a or not building; log: %s\n' \
    "$caught" "$applied" $((100 * caught / applied)) "$na" "$log"
fi
[ "$survived" -eq 0 ] && [ "$na" -eq 0 ]
