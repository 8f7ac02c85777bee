#!/usr/bin/env bash
# insite-auditd shipping rate against a bare COPY of the same rows into the
# same table, interleaved in one run:
#
#   bench/gdpr/ship.sh            ROUNDS=3 SECS=8 BATCH=10000 AUDITD=build/bin/insite-auditd
#
# 1. nginx (2 workers, fsync off) serves an audited static file to wrk for
#    SECS seconds: the journal (two chains, real records).
# 2. Each round, on an emptied gdpr_audit_trail:
#      shipper  insite-auditd, started and connected on an empty
#               directory, from the journal's files appearing there to
#               every row committed (verify chains, typed COPY, positions
#               in the transaction)
#      copy     psql \copy of the same rows (exported once from the
#               shipper's first round) into the same table
#    and prints rows/s of each, the ratio (target >= 0.70) and the load
#    average.  The order alternates between rounds.  PERF=1 profiles the
#    shipper's last round.
# Needs wrk, the modules (make modules), insite-auditd (make workers);
# uses INSITE_PG_DSN if set, else starts its own PostgreSQL (services.sh).
set -euo pipefail
. "$(dirname "$0")/../lib/gdpr_conf.sh"
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
ROUNDS=${ROUNDS:-3} SECS=${SECS:-8} BATCH=${BATCH:-10000} AUDITD=${AUDITD:-build/bin/insite-auditd}
work=$(mktemp -d /tmp/insite-bench-ship.XXXXXX)
chmod 755 "$work"
port=$(perl -MIO::Socket::INET -e 'print IO::Socket::INET->new(Listen=>1,LocalAddr=>"127.0.0.1:0")->sockport')
own_pg= auditd_pid= schema=
cleanup() {
  [ -f "$work/logs/nginx.pid" ] && kill -QUIT "$(cat "$work/logs/nginx.pid")" 2>/dev/null || true
  [ -n "$auditd_pid" ] && kill "$auditd_pid" 2>/dev/null || true
  [ -n "$schema" ] && psql "$INSITE_PG_DSN" -qX -c "DROP SCHEMA IF EXISTS $schema CASCADE" 2>/dev/null || true
  [ -n "$own_pg" ] && INSITE_RUN_DIR=$work/run scripts/services.sh stop pg >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
echo "ok" > "$work/ok.txt"
mkdir -p "$work/logs"

# ---- 1. the journal
GDPR_CONF_ROTATE=16m gdpr_conf "$root/build/modules" "$work" "$port" off > "$work/nginx.conf"
nginx -p "$work" -c "$work/nginx.conf"
sleep 0.5
wrk -t2 -c64 -d"${SECS}s" -H 'X-User: bench' "http://127.0.0.1:$port/audited" > /dev/null
kill -QUIT "$(cat "$work/logs/nginx.pid")"
sleep 1
lines=$(cat "$work"/journal/audit-*.jsonl | wc -l)

# ---- 2. PostgreSQL, a schema of our own
if [ -z "${INSITE_PG_DSN:-}" ]; then
  own_pg=1
  INSITE_RUN_DIR=$work/run scripts/services.sh start pg >/dev/null
  INSITE_PG_DSN=$(sed -n 's/^INSITE_PG_DSN=//p' "$work/run/pg.env")
fi
schema=bench_ship_$$
psql "$INSITE_PG_DSN" -qX -c "DROP SCHEMA IF EXISTS $schema CASCADE; CREATE SCHEMA $schema" 2>/dev/null
dsn="$INSITE_PG_DSN?options=-csearch_path%3D$schema"
# the migrations first, so that only shipping is timed
INSITE_PG_DSN=$dsn INSITE_AUDITD_JOURNAL_DIR=$work/empty INSITE_AUDITD_HTTP_PORT=0 \
  timeout -s TERM 3 build/bin/insite-auditd > "$work/migrate.log" 2>&1 || true
cols="id, ts, user_id, access_type, data_type, method, path, status, result, ip, request_id, worker, seq, prev_hash, hash, data_subject, source, record"
empty() {
  psql "$dsn" -qX -v ON_ERROR_STOP=1 -c "TRUNCATE gdpr_audit_trail, gdpr_audit_positions" -c "VACUUM ANALYZE gdpr_audit_trail" >/dev/null
}
count() { psql "$dsn" -qtAX -c "SELECT count(*) FROM gdpr_audit_trail" 2>/dev/null || echo 0; }
now() { date +%s.%N; }

run_shipper() {   # from the files appearing in its directory (connected, idle) to the last row
  local start end
  rm -rf "$work/ship"; mkdir -p "$work/ship"
  INSITE_PG_DSN=$dsn INSITE_AUDITD_JOURNAL_DIR=$work/ship INSITE_AUDITD_HTTP_PORT=0 \
    INSITE_AUDITD_BATCH_SIZE=$BATCH INSITE_AUDITD_KEEP_SHIPPED=true INSITE_AUDITD_SOURCE=bench \
    INSITE_AUDITD_POLL_INTERVAL=20ms "$AUDITD" > "$work/auditd.log" 2>&1 &
  auditd_pid=$!
  until grep -q 'position(s) of source' "$work/auditd.log"; do sleep 0.05; done
  [ -n "${PERF:-}" ] && perf record -q -g -o "$work/perf.data" -p "$auditd_pid" >/dev/null 2>&1 &
  start=$(now)
  for f in "$work"/journal/audit-*.jsonl; do ln "$f" "$work/ship/"; done
  while [ "$(count)" -lt "$lines" ]; do sleep 0.1; done   # (psql is not free)
  end=$(now)
  kill "$auditd_pid"; wait "$auditd_pid" 2>/dev/null || true; auditd_pid=
  echo "$end - $start" | bc -l
}
run_copy() {
  local start end
  start=$(now)
  psql "$dsn" -qX -v ON_ERROR_STOP=1 -c "\\copy gdpr_audit_trail ($cols) FROM '$work/rows.copy'" >/dev/null
  end=$(now)
  echo "$end - $start" | bc -l
}

echo "# $lines journal records from wrk ${SECS}s against 2 nginx workers; shipper batch $BATCH; $(nproc) cores"
empty
run_shipper > /dev/null           # warm-up, and the rows for the bare COPY
psql "$dsn" -qX -c "\\copy (SELECT $cols FROM gdpr_audit_trail ORDER BY worker, seq) TO '$work/rows.copy'"
printf '%-6s %-28s %12s %12s %8s\n' round 'load average' shipper/s copy/s ratio
for ((r = 1; r <= ROUNDS; r++)); do
  load=$(cut -d' ' -f1-3 /proc/loadavg)
  if (( r % 2 )); then
    empty; ts=$(run_shipper); empty; tc=$(run_copy)
  else
    empty; tc=$(run_copy); empty; ts=$(run_shipper)
  fi
  printf '%-6s %-28s %12.0f %12.0f %8.2f\n' "$r" "$load" "$(echo "$lines / $ts" | bc -l)" \
    "$(echo "$lines / $tc" | bc -l)" "$(echo "$tc / $ts" | bc -l)"
done
echo "(ratio = shipper rows/s / bare COPY rows/s; target >= 0.70)"
if [ -n "${PERF:-}" ]; then
  sleep 0.5
  echo "# perf: the shipper's last round, self time"
  perf report -i "$work/perf.data" --no-children --sort dso,symbol --stdio -g none 2>/dev/null \
    | grep -E '^ +[0-9]' | head -30
fi
