#!/usr/bin/env bash
# GDPR audit benchmark, in one nginx run (2 workers):
#   wrk against /audited (insite_gdpr_audit on) and /plain (off), same
#   content, alternating, for each fsync mode (off, 1s, always);
#   then insite-auditd shipping the journal into PostgreSQL: rows/s.
#
#   bench/gdpr/run.sh            SECS=10 CONNS=64 THREADS=2 MODES="off 1s always" PAIRS=2
#                                PAIRS: audited/plain pairs per kind; the median ratio is printed
#                                PSEUDONYM=1: journal pseudonyms (a key file)
#                                SHIP=0: skip the shipper part
#                                PIN=1: one nginx worker on CPU 0, wrk on CPU 1
#                                (the WebSocket bench's layout: the worker is
#                                the bottleneck and never shares its core)
# Needs wrk, the modules (make modules) and insite-auditd (make workers);
# uses INSITE_PG_DSN if set, else starts its own PostgreSQL (services.sh).
set -euo pipefail
. "$(dirname "$0")/../lib/gdpr_conf.sh"
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
SECS=${SECS:-10} CONNS=${CONNS:-64} THREADS=${THREADS:-2} MODES=${MODES:-"off 1s always"} PAIRS=${PAIRS:-2}
work=$(mktemp -d /tmp/insite-bench-gdpr.XXXXXX)
chmod 755 "$work"
port=$(perl -MIO::Socket::INET -e 'print IO::Socket::INET->new(Listen=>1,LocalAddr=>"127.0.0.1:0")->sockport')
backend=$(perl -MIO::Socket::INET -e 'print IO::Socket::INET->new(Listen=>1,LocalAddr=>"127.0.0.1:0")->sockport')
own_pg=
cleanup() {
  [ -f "$work/logs/nginx.pid" ] && kill -QUIT "$(cat "$work/logs/nginx.pid")" 2>/dev/null || true
  [ -n "${auditd_pid:-}" ] && kill "$auditd_pid" 2>/dev/null || true
  [ -n "$own_pg" ] && INSITE_RUN_DIR=$work/run scripts/services.sh stop pg >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
echo "ok" > "$work/ok.txt"
other=(); nworkers=2
if [ "${PIN:-0}" = 1 ]; then
  other=(taskset -c 1); nworkers=1
  # shellcheck disable=SC2034  # read by gdpr_conf (bench/lib/gdpr_conf.sh)
  GDPR_CONF_MAIN="worker_processes 1; worker_cpu_affinity 01;"
fi
mkdir -p "$work/logs"
result() { printf '%-8s %-14s %10s req/s\n' "$1" "$2" "$3"; }
# CPU ticks (user + system) of nginx's workers: per request, the cost of a
# location, which other load on a shared machine skews far less than req/s
. "$(dirname "$0")/../lib/workers.sh"
ticks() { workers_sum "$work/logs/nginx.pid" cpu; }
# "req/s cpu_us_per_request"
rps() {
  local t0 t1 out
  t0=$(ticks)
  out=$("${other[@]}" wrk -t"$THREADS" -c"$CONNS" -d"${SECS}s" -H 'X-User: bench' "http://127.0.0.1:$port$1")
  t1=$(ticks)
  echo "$(echo "$out" | awk '/Requests\/sec/ {print $2}')" \
    "$(workers_us_per_req $((t1 - t0)) "$(echo "$out" | awk '/requests in/ {print $1}')")"
}
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'; }

echo "# wrk ${SECS}s, $CONNS connections, $THREADS threads; nginx $nworkers worker(s)$([ "${PIN:-0}" = 1 ] && echo ' on CPU 0, wrk on CPU 1'); pseudonyms ${PSEUDONYM:-0}; load $(cut -d' ' -f1-3 /proc/loadavg)"
for mode in $MODES; do
  rm -rf "$work/journal"
  gdpr_conf "$root/build/modules" "$work" "$port" "$mode" "$backend" > "$work/nginx.conf"
  nginx -p "$work" -c "$work/nginx.conf"
  sleep 0.5
  rps /plain > /dev/null                                   # warm up
  for kind in static api; do
    pre=; [ "$kind" = api ] && pre=/api
    # PAIRS runs of each, alternating, the order flipped every pair so a
    # drift of the machine's speed does not favour one side; the ratios of
    # each pair are printed and their median is the figure
    rs=(); cs=(); as=(); ps=(); acs=(); pcs=()
    for i in $(seq "$PAIRS"); do
      if [ $((i % 2)) = 1 ]; then
        read -r a ac < <(rps $pre/audited); read -r p pc < <(rps $pre/plain)
      else
        read -r p pc < <(rps $pre/plain); read -r a ac < <(rps $pre/audited)
      fi
      as+=("$a"); ps+=("$p"); acs+=("$ac"); pcs+=("$pc")
      rs+=("$(echo "$a / $p" | bc -l)"); cs+=("$(echo "$pc / $ac" | bc -l)")
    done
    result "$mode" "$kind-audited" "$(printf %.0f "$(median "${as[@]}")")"
    result "$mode" "$kind-plain" "$(printf %.0f "$(median "${ps[@]}")")"
    printf '%-8s %-14s %10.3f  (pairs: %s)\n' "$mode" "$kind-ratio" "$(median "${rs[@]}")" \
      "$(printf '%.3f ' "${rs[@]}")"
    printf '%-8s %-14s %10.3f  (pairs: %s; worker CPU per request: audited %.1f us, plain %.1f us)\n' \
      "$mode" "$kind-cpu-ratio" "$(median "${cs[@]}")" "$(printf '%.3f ' "${cs[@]}")" \
      "$(median "${acs[@]}")" "$(median "${pcs[@]}")"
  done
  kill -QUIT "$(cat "$work/logs/nginx.pid")"
  sleep 1
done

echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
[ "${SHIP:-1}" = 0 ] && exit 0

# ---- shipper throughput on the last journal
lines=$(cat "$work"/journal/audit-*.jsonl | wc -l)
if [ -z "${INSITE_PG_DSN:-}" ]; then
  own_pg=1
  INSITE_RUN_DIR=$work/run scripts/services.sh start pg >/dev/null
  INSITE_PG_DSN=$(sed -n 's/^INSITE_PG_DSN=//p' "$work/run/pg.env")
fi
schema=bench_gdpr_$$
psql "$INSITE_PG_DSN" -qX -c "DROP SCHEMA IF EXISTS $schema CASCADE; CREATE SCHEMA $schema" 2>/dev/null
dsn="$INSITE_PG_DSN?options=-csearch_path%3D$schema"
# apply the migrations first so only shipping is timed
INSITE_PG_DSN=$dsn INSITE_AUDITD_JOURNAL_DIR=$work/empty INSITE_AUDITD_HTTP_PORT=0 \
  timeout -s TERM 2 build/bin/insite-auditd > "$work/migrate.log" 2>&1 || true
start=$(date +%s.%N)
INSITE_PG_DSN=$dsn INSITE_AUDITD_JOURNAL_DIR=$work/journal INSITE_AUDITD_HTTP_PORT=0 \
  INSITE_AUDITD_BATCH_SIZE=${BATCH:-10000} INSITE_AUDITD_KEEP_SHIPPED=true INSITE_AUDITD_SOURCE=bench \
  build/bin/insite-auditd > "$work/auditd.log" 2>&1 &
auditd_pid=$!
while :; do
  n=$(psql "$dsn" -qtAX -c "SELECT count(*) FROM gdpr_audit_trail" 2>/dev/null || echo 0)
  [ "$n" -ge "$lines" ] && break
  sleep 0.2
done
end=$(date +%s.%N)
printf 'shipper  %d rows in %.2fs: %.0f rows/s into PostgreSQL\n' "$lines" "$(echo "$end - $start" | bc -l)" \
  "$(echo "$lines / ($end - $start)" | bc -l)"
psql "$INSITE_PG_DSN" -qX -c "DROP SCHEMA $schema CASCADE" 2>/dev/null || true
