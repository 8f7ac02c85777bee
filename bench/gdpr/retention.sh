#!/usr/bin/env bash
# Retention and compliance-report benchmark (docs/gdpr-retention.md), in
# one PostgreSQL of its own (scripts/services.sh):
#
#   1. a writer (pgbench, 2 clients, one INSERT into stock_prices and one
#      into social_posts per transaction, as the collector writes) alone for
#      SECS seconds: its p99 latency;
#   2. the same writer while insite-gdpr --retention-now deletes ROWS
#      expired rows (3/4 of stock_prices, 1/4 of social_posts): the rows/s
#      deleted and the writer's p99, and their ratio to (1);
#   3. AUDIT audit rows spread over one year: seconds for the compliance
#      report as JSON and as PDF (the whole year).
#
#   bench/gdpr/retention.sh            ROWS=1000000 AUDIT=1000000 SECS=15 REPORTS=2
#   PARTS="retention report"           (either one alone: PARTS=report)
#   ROWS=10000000 PARTS=retention RUN_SECS=120 SECS=120
#                                      the issue's scale: seeding 15M rows
#                                      server-side takes minutes; run it
#                                      under nice, never in the test suite;
#                                      RUN_SECS kills the deletion after
#                                      that long (rows/s over the window)
# Needs insite-gdpr (make workers) and pgbench (postgresql).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
ROWS=${ROWS:-1000000} AUDIT=${AUDIT:-1000000} SECS=${SECS:-15} REPORTS=${REPORTS:-2} RUN_SECS=${RUN_SECS:-0}
PARTS=${PARTS:-"retention report"}
bin=${INSITE_GDPR_BIN:-$root/build/bin/insite-gdpr}
work=$(mktemp -d /tmp/insite-bench-retention.XXXXXX)
chmod 755 "$work"
gdpr_pid=
cleanup() {
  [ -n "$gdpr_pid" ] && kill "$gdpr_pid" 2>/dev/null || true
  INSITE_RUN_DIR=$work/run scripts/services.sh stop pg >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/run"
INSITE_RUN_DIR=$work/run scripts/services.sh start pg >/dev/null
# shellcheck disable=SC1091
. "$work/run/pg.env"
dsn=$INSITE_PG_DSN
pgbench=$(ls /usr/lib/postgresql/*/bin/pgbench | sort -r | head -1)
psql_() { psql "$dsn" -X -qtA -v ON_ERROR_STOP=1 -c "$1"; }

map=$work/map.json
sed 's|"backend": "[^"]*"|"backend": "'"$dsn"'"|' workers/gdpr/datamap.json > "$map"
export INSITE_PG_DSN=$dsn INSITE_PG_MIGRATIONS_DIR=$root/workers/migrations INSITE_GDPR_DATA_MAP=$map
export INSITE_GDPR_RETENTION_TIME= INSITE_GDPR_PSEUDONYM_KEY=$work/psn.key INSITE_GDPR_SIGNING_KEY=$work/sign.pem
printf '0123456789abcdef0123456789abcdef' > "$work/psn.key"
openssl genpkey -algorithm ed25519 -out "$work/sign.pem" 2>/dev/null
"$bin" --retention-now --dry-run >/dev/null 2>&1 || true      # migrations
psql_ "UPDATE gdpr_retention_policies SET is_active = data_type IN ('price_history', 'social_posts')"

if [[ " $PARTS " == *" retention "* ]]; then
sp=$((ROWS * 3 / 4)) so=$((ROWS / 4))
echo "# seeding: $((sp * 4 / 3)) stock_prices ($sp expired), $((so * 2)) social_posts ($so expired)"
# the seed skips the 15-minute rollup's insert trigger (migration 031: it
# aggregates every inserted row, minutes per million here); the delete
# trigger stays, so the deletion pays what it pays in production
psql_ "ALTER TABLE stock_prices DISABLE TRIGGER stock_bars_15m_ins;
       INSERT INTO stock_prices (symbol, ts, interval, source, open, high, low, close, volume)
       SELECT 'S' || (g % 500), now() - interval '800 days' - g * interval '1 second', '1m', 'seed', 1, 2, 0.5, 1.5, g
       FROM generate_series(1, $sp) g;
       INSERT INTO stock_prices (symbol, ts, interval, source, open, high, low, close, volume)
       SELECT 'S' || (g % 500), now() - g * interval '1 second', '1m', 'seed', 1, 2, 0.5, 1.5, g
       FROM generate_series(1, $((sp / 3))) g;
       INSERT INTO social_posts (source, source_id, author, text, created_at)
       SELECT 'reddit', 'o' || g, 'author' || (g % 1000), repeat('x', 200), now() - interval '200 days'
       FROM generate_series(1, $so) g;
       INSERT INTO social_posts (source, source_id, author, text, created_at)
       SELECT 'reddit', 'n' || g, 'author' || (g % 1000), repeat('x', 200), now() FROM generate_series(1, $so) g;
       ALTER TABLE stock_prices ENABLE TRIGGER stock_bars_15m_ins"
psql_ "VACUUM ANALYZE stock_prices"
psql_ "VACUUM ANALYZE social_posts"

cat > "$work/writer.sql" <<'SQL'
\set n random(1, 1000000000)
INSERT INTO stock_prices (symbol, ts, interval, source, close) VALUES ('W' || (:n % 100), now() + (:n || ' microseconds')::interval, '1m', 'writer', 1) ON CONFLICT DO NOTHING;
INSERT INTO social_posts (source, source_id, author, text, created_at) VALUES ('reddit', 'w' || :n || '-' || :client_id, 'w', 'y', now()) ON CONFLICT DO NOTHING;
SQL
p99() { # pgbench -l logs: the 3rd field is the latency in µs
  cat "$1".* | awk '{print $3}' | sort -n | awk '{a[NR]=$1} END {i=int(NR*0.99); if (i<1) i=1; printf "%.2f", a[i]/1000}'
}
writer() { # $1: log prefix; runs SECS
  (cd "$work" && "$pgbench" "$dsn" -n -c 2 -j 2 -T "$SECS" -f writer.sql -l --log-prefix="$1" >"$1.out" 2>&1)
}

echo "# load average: $(cut -d' ' -f1-3 /proc/loadavg)"
writer alone
base=$(p99 "$work/alone")
echo "writer alone:            p99 ${base} ms ($(grep -o 'tps = [0-9.]*' "$work/alone.out" | head -1))"

writer during &
wpid=$!
t0=$(date +%s.%N)
"$bin" --retention-now > "$work/run.json" 2>"$work/run.log" &
rpid=$!
# RUN_SECS > 0: SIGTERM after that long (the run stops between batches;
# the log row counts every committed batch exactly); rows/s is then over
# that window
[ "$RUN_SECS" -gt 0 ] && (sleep "$RUN_SECS"; kill -TERM "$rpid" 2>/dev/null) &
wait "$rpid" || true
t1=$(date +%s.%N)
wait "$wpid"
deleted=$(psql_ "SELECT coalesce(sum(rows_affected), 0) FROM gdpr_audit_log WHERE action = 'automated_deletion'")
during=$(p99 "$work/during")
echo "writer during retention: p99 ${during} ms ($(grep -o 'tps = [0-9.]*' "$work/during.out" | head -1))"
awk -v d="$deleted" -v a="$t0" -v b="$t1" -v p="$during" -v q="$base" \
  'BEGIN { printf "retention: %d rows in %.1f s = %.0f rows/s; writer p99 ratio during/alone = %.2f\n", d, b-a, d/(b-a), p/q }'
echo "# load average: $(cut -d' ' -f1-3 /proc/loadavg)"

fi

if [[ " $PARTS " == *" report "* ]]; then
echo "# seeding $AUDIT audit rows over one year"
psql_ "INSERT INTO gdpr_audit_trail (id, ts, user_id, data_subject, access_type, status, result, worker, seq, prev_hash, hash, source, record)
       SELECT gen_random_uuid(), '2025-01-01'::timestamptz + (g::float8 / $AUDIT) * interval '365 days', 'u' || (g % 5000), 'u' || (g % 5000),
              (ARRAY['read','write','delete','export'])[1 + g % 4], 200, true, (g % 4)::text, g / 4 + 1, 'x', 'y', 'bench', '{}'
       FROM generate_series(0, $AUDIT - 1) g"
psql_ "ANALYZE gdpr_audit_trail"
port=$(perl -MIO::Socket::INET -e 'print IO::Socket::INET->new(Listen=>1,LocalAddr=>"127.0.0.1:0")->sockport')
INSITE_GDPR_HTTP_PORT=$port INSITE_REDIS_PORT=9 INSITE_KAFKA_BOOTSTRAP=127.0.0.1:9 INSITE_KAFKA_SPOOL_DIR=$work/spool \
  "$bin" > "$work/gdpr.log" 2>&1 &
gdpr_pid=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
q="http://127.0.0.1:$port/api/v1/gdpr/compliance-report?start_date=2025-01-01&end_date=2025-12-31"
for i in $(seq "$REPORTS"); do
  for f in json pdf; do
    curl -s -o "$work/report.$f" -w "report $f #$i (one year, $AUDIT audit rows): %{time_total} s, %{size_download} bytes, HTTP %{http_code}" \
      -H 'X-User-Id: bench' -H 'X-User-Scopes: gdpr:admin' "$q&format=$f"
    echo "  (load $(cut -d' ' -f1-3 /proc/loadavg))"
  done
done
fi
