#!/usr/bin/env bash
# Instructions an audited request costs over a plain one, by function:
# one nginx (master_process off, one worker) under callgrind, N plain then N
# audited static requests over one keepalive connection, the counters zeroed
# between.  Instructions, not seconds: load on the machine does not move
# them, so two builds can be compared on a busy machine.  Under valgrind
# SHA-256 runs in software (no SHA-NI), so the SHA-256 lines are larger than
# on the machine.
#
#   bench/gdpr/callgrind.sh                 N=3000, this tree's build/modules
#   N=1000 MODULES=/other/tree/build/modules PSEUDONYM=0 bench/gdpr/callgrind.sh
#
# Prints Ir per request of each, their difference, and that difference by
# function (self cost); KEEP=/some/prefix keeps both profiles.
set -euo pipefail
. "$(dirname "$0")/../lib/gdpr_conf.sh"
root=$(cd "$(dirname "$0")/../.." && pwd)
N=${N:-3000} MODULES=${MODULES:-$root/build/modules}
work=$(mktemp -d /tmp/insite-bench-cg.XXXXXX)
chmod 755 "$work"
vg_pid=
cleanup() { [ -z "$vg_pid" ] || kill "$vg_pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
port=$(perl -MIO::Socket::INET -e 'print IO::Socket::INET->new(Listen=>1,LocalAddr=>"127.0.0.1:0")->sockport')
echo ok > "$work/ok.txt"
mkdir -p "$work/logs"
GDPR_CONF_MAIN=$'master_process off;\ndaemon off;' PSEUDONYM=${PSEUDONYM:-1} \
  gdpr_conf "$MODULES" "$work" "$port" off > "$work/nginx.conf"
valgrind --tool=callgrind --compress-strings=no --callgrind-out-file="$work/cg.out" \
  nginx -p "$work" -c "$work/nginx.conf" > "$work/valgrind.log" 2>&1 &
vg_pid=$!
for _ in $(seq 100); do
  curl -fs "http://127.0.0.1:$port/plain" > /dev/null 2>&1 && break
  sleep 0.2
done
get() { curl -fs -H 'X-User: bench' "http://127.0.0.1:$port/$1?n=[1-$N]" > /dev/null; }
get plain; get audited                                    # warm both paths
total() { callgrind_annotate "$1" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}'; }
dumps=0
run() {                       # callgrind numbers its dumps cg.out.1, .2, ...
  callgrind_control -z "$vg_pid" > /dev/null
  get "$1"
  callgrind_control -d "$1" "$vg_pid" > /dev/null
  dumps=$((dumps + 1))
}
run plain; plain=$work/cg.out.$dumps
run audited; audited=$work/cg.out.$dumps
p=$(total "$plain") a=$(total "$audited")
printf 'plain    %8.0f Ir per request\naudited  %8.0f Ir per request\nmore     %8.0f Ir per audited request (N=%d, pseudonyms %s)\n' \
  "$(echo "$p / $N" | bc -l)" "$(echo "$a / $N" | bc -l)" "$(echo "($a - $p) / $N" | bc -l)" "$N" "${PSEUDONYM:-1}"
# each dump names its functions in full (--compress-strings=no): a later
# dump's numbered names would point into an earlier dump's file
echo "# instructions per request, audited minus plain, by function (self), top ${TOP:-25}"
for f in "$plain" "$audited"; do
  callgrind_annotate --auto=no --inclusive=no --threshold=100 "$f" > "$f.txt" 2>/dev/null
done
python3 - "$plain.txt" "$audited.txt" "$N" "${TOP:-25}" <<'PY'
import collections, re, sys
def load(path):
    d = collections.Counter()
    for line in open(path):
        m = re.match(r'\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(.*)$', line)
        if m and 'PROGRAM TOTALS' not in line:
            d[m.group(2)] += int(m.group(1).replace(',', ''))
    return d
p, a, n, top = load(sys.argv[1]), load(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
# main and what calls it show whole-program totals in this listing
skip = ('(below main)', 'libc_start', '???:main ', 'ld-linux')
rows = sorted(((a[k] - p[k]) / n, k) for k in set(a) | set(p) if not any(s in k for s in skip))
for v, k in reversed(rows[-top:]):
    print('%8.0f  %s' % (v, k[:150]))
PY
[ -z "${KEEP:-}" ] || { cp "$plain" "$KEEP.plain"; cp "$audited" "$KEEP.audited"; echo "# kept $KEEP.plain $KEEP.audited"; }
