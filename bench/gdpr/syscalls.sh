#!/usr/bin/env bash
# Write-type syscalls (syscw of /proc/<pid>/io) and worker CPU time per
# request, a static file plain and audited, in one nginx (2 workers) built
# from the modules of a tree: what the journal costs per request, with far
# less noise on a shared machine than req/s.
#
#   bench/gdpr/syscalls.sh [fsync mode, default off] [tree, default this one]
#   e.g. alternating two builds:
#   for i in 1 2 3; do bench/gdpr/syscalls.sh off; bench/gdpr/syscalls.sh off /work/other; done
set -euo pipefail
. "$(dirname "$0")/../lib/gdpr_conf.sh"
mode=${1:-off}
root=${2:-$(cd "$(dirname "$0")/../.." && pwd)}
SECS=${SECS:-3}
work=$(mktemp -d /tmp/insite-bench-syscw.XXXXXX)
chmod 755 "$work"
trap '[ -f "$work/logs/nginx.pid" ] && kill -QUIT "$(cat "$work/logs/nginx.pid")" 2>/dev/null; sleep 0.5; rm -rf "$work"' EXIT
echo ok > "$work/ok.txt"
mkdir "$work/logs"
port=$(perl -MIO::Socket::INET -e 'print IO::Socket::INET->new(Listen=>1,LocalAddr=>"127.0.0.1:0")->sockport')
gdpr_conf "$root/build/modules" "$work" "$port" "$mode" > "$work/nginx.conf"
nginx -p "$work" -c "$work/nginx.conf"
sleep 0.5
. "$(dirname "$0")/../lib/workers.sh"
sum() { workers_sum "$work/logs/nginx.pid" "$1"; }  # "cpu" or a field of /proc/<pid>/io
for loc in plain audited; do
  t0=$(sum cpu); s0=$(sum syscw)
  n=$(wrk -t2 -c64 -d"${SECS}s" -H 'X-User: bench' "http://127.0.0.1:$port/$loc" | awk '/requests in/ {print $1}')
  s1=$(sum syscw); t1=$(sum cpu)
  printf '%s %-4s %-8s write syscalls/request %.3f, worker CPU %.1f us/request (%d requests, load %s)\n' \
    "$(basename "$root")" "$mode" "$loc" "$(echo "($s1 - $s0) / $n" | bc -l)" \
    "$(workers_us_per_req $((t1 - t0)) "$n")" "$n" "$(cut -d' ' -f1 /proc/loadavg)"
done
