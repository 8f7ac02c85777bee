#!/usr/bin/env bash
# Erasure of one user with ROWS rows across the data map (target < 60 s):
# a PostgreSQL of its own (services.sh) with our database and a backend
# database holding the plan's tables, ROWS rows for the user spread over
# them plus as many for another user; then POST /api/v1/gdpr/delete and the
# time until the request is completed (actions, verification, receipt).
#
#   bench/gdpr/erasure.sh        ROWS=100000
# Needs the workers (make workers), PostgreSQL, redis-server, openssl.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
ROWS=${ROWS:-100000}
work=$(mktemp -d /tmp/insite-bench-erasure.XXXXXX)
chmod 755 "$work"
freeport() { perl -MIO::Socket::INET -e 'print IO::Socket::INET->new(Listen=>1,LocalAddr=>"127.0.0.1:0")->sockport'; }
api=$(freeport) rport=$(freeport)
cleanup() {
  [ -n "${gdpr_pid:-}" ] && kill "$gdpr_pid" 2>/dev/null || true
  [ -n "${redis_pid:-}" ] && kill "$redis_pid" 2>/dev/null || true
  INSITE_RUN_DIR=$work/run scripts/services.sh stop pg >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
INSITE_RUN_DIR=$work/run scripts/services.sh start pg >/dev/null
dsn=$(sed -n 's/^INSITE_PG_DSN=//p' "$work/run/pg.env")
pgport=$(sed -n 's/^INSITE_PG_PORT=//p' "$work/run/pg.env")
psql -X -q -h 127.0.0.1 -p "$pgport" -U postgres -d postgres -c "CREATE DATABASE backend OWNER insite"
bdsn=${dsn%/insite}/backend
per=$((ROWS / 6))
psql -X -q "$bdsn" <<SQL
CREATE TABLE users (id text PRIMARY KEY, email text);
CREATE TABLE watchlist_items (id serial PRIMARY KEY, user_id text, symbol text);
CREATE TABLE search_history (id serial PRIMARY KEY, user_id text, query text);
CREATE TABLE user_activity (id serial PRIMARY KEY, user_id text, action text);
CREATE TABLE user_behavior (id serial PRIMARY KEY, user_id text, feature text);
CREATE TABLE user_sessions (id serial PRIMARY KEY, user_id text, ip_address text);
CREATE TABLE user_feedback (id serial PRIMARY KEY, user_id text, email text, ip_address text, body text);
INSERT INTO users VALUES ('victim', 'v@example.com'), ('other', 'o@example.com');
INSERT INTO watchlist_items (user_id, symbol) SELECT u, 'S' || g FROM unnest(ARRAY['victim','other']) u, generate_series(1, $per) g;
INSERT INTO search_history (user_id, query) SELECT u, 'q' || g FROM unnest(ARRAY['victim','other']) u, generate_series(1, $per) g;
INSERT INTO user_activity (user_id, action) SELECT u, 'a' || g FROM unnest(ARRAY['victim','other']) u, generate_series(1, $per) g;
INSERT INTO user_behavior (user_id, feature) SELECT u, 'f' || g FROM unnest(ARRAY['victim','other']) u, generate_series(1, $per) g;
INSERT INTO user_sessions (user_id, ip_address) SELECT u, '10.0.0.1' FROM unnest(ARRAY['victim','other']) u, generate_series(1, $per) g;
INSERT INTO user_feedback (user_id, email, body) SELECT u, 'e', 'b' FROM unnest(ARRAY['victim','other']) u, generate_series(1, $per) g;
CREATE INDEX ON watchlist_items (user_id); CREATE INDEX ON search_history (user_id);
CREATE INDEX ON user_activity (user_id); CREATE INDEX ON user_behavior (user_id);
CREATE INDEX ON user_sessions (user_id); CREATE INDEX ON user_feedback (user_id);
SQL
# no Kafka here: the map without its kafka target
BDSN=$bdsn perl -MJSON::PP -0 -e 'my $m = decode_json(<STDIN>); delete $m->{kafka};
  $m->{databases}{backend} = $ENV{BDSN}; print encode_json($m)' < workers/gdpr/datamap.json > "$work/map.json"
openssl rand -out "$work/psn.key" 32
openssl genpkey -algorithm ed25519 -out "$work/sign.pem" 2>/dev/null
redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --logfile "$work/redis.log" & redis_pid=$!
INSITE_PG_DSN=$dsn INSITE_PG_MIGRATIONS_DIR=$root/workers/migrations INSITE_REDIS_PORT=$rport \
  INSITE_GDPR_HTTP_PORT=$api INSITE_GDPR_DATA_MAP=$work/map.json INSITE_GDPR_PSEUDONYM_KEY=$work/psn.key \
  INSITE_GDPR_SIGNING_KEY=$work/sign.pem INSITE_KAFKA_SPOOL_DIR=$work/spool \
  build/bin/insite-gdpr > "$work/gdpr.log" 2>&1 & gdpr_pid=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$api/healthz" >/dev/null && break; sleep 0.1; done
start=$(date +%s.%N)
id=$(curl -s -H 'X-User-Id: victim' -d '{"confirmation":"DELETE_MY_DATA"}' "http://127.0.0.1:$api/api/v1/gdpr/delete" |
     perl -MJSON::PP -e 'print decode_json(join "", <STDIN>)->{request_id}')
until [ "$(curl -s -H 'X-User-Id: victim' "http://127.0.0.1:$api/api/v1/gdpr/deletion-status/$id" |
           perl -MJSON::PP -e 'print decode_json(join "", <STDIN>)->{status}')" = completed ]; do
  sleep 0.2
  [ "$(echo "$(date +%s.%N) - $start > 600" | bc)" = 1 ] && { echo "not completed in 600 s" >&2; tail "$work/gdpr.log" >&2; exit 1; }
done
end=$(date +%s.%N)
left=$(psql -XqtA "$bdsn" -c "SELECT (SELECT count(*) FROM search_history WHERE user_id = 'victim') + (SELECT count(*) FROM user_activity WHERE user_id = 'victim')")
kept=$(psql -XqtA "$bdsn" -c "SELECT count(*) FROM search_history WHERE user_id = 'other'")
printf 'erasure of %d rows (6 tables, other user kept: %s rows each): %.2f s; rows left: %s (target < 60 s)\n' \
  "$((per * 6))" "$kept" "$(echo "$end - $start" | bc -l)" "$left"
