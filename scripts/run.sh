#!/usr/bin/env bash
# The README's run command: the whole system on local defaults.
#
# Builds, starts Redis, PostgreSQL and a Kafka mock cluster on free loopback
# ports, nginx with every insite module on 127.0.0.1:8080 (nginx.conf.example
# rendered with those ports into build/run/nginx/), and the workers; prints
# what is where; Ctrl-C stops everything it started.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

say() { printf '==> %s\n' "$*"; }

say "checking dependencies"
scripts/deps.sh
say "building nginx modules and workers"
make -s -j"$(nproc)" modules workers
say "fetching the page's chart library (npm, once)"
scripts/web-deps.sh

export INSITE_RUN_DIR=$root/build/run
mkdir -p "$INSITE_RUN_DIR"
ngx_dir=$INSITE_RUN_DIR/nginx
pids=()

stop_all() {
  trap - INT TERM EXIT
  say "stopping"
  if [ -f "$ngx_dir/logs/nginx.pid" ]; then
    kill -QUIT "$(cat "$ngx_dir/logs/nginx.pid")" 2>/dev/null || true
  fi
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  scripts/services.sh stop || true
  say "stopped"
}
trap stop_all INT TERM EXIT

say "starting Redis, PostgreSQL, Kafka (mock cluster)"
# the platform's topics come from the topic catalog (services.sh starts the
# mock with --catalog; the mock cannot take the Admin API's CreateTopics)
scripts/services.sh start
# shellcheck disable=SC1091
. "$INSITE_RUN_DIR/services.env"

say "starting nginx on 127.0.0.1:8080"
mkdir -p "$ngx_dir/logs"
ln -sfn "$root/build/modules" "$ngx_dir/modules"
ln -sfn "$root/web" "$ngx_dir/web"
ln -sfn "$root/clients" "$ngx_dir/clients"
ln -sfn "$root/build/web/vendor" "$ngx_dir/vendor"
# this installation's own JWT secret (never the example's placeholder)
[ -s "$INSITE_RUN_DIR/jwt-secret" ] ||
  (umask 077; openssl rand -hex 32 > "$INSITE_RUN_DIR/jwt-secret")
# the journals hold pseudonyms, not user ids (docs/gdpr-rights.md): one key
# for nginx, insite-auditd and insite-gdpr
[ -s "$INSITE_RUN_DIR/gdpr-pseudonym.key" ] ||
  (umask 077; openssl rand -out "$INSITE_RUN_DIR/gdpr-pseudonym.key" 32)
# the journal directory is made by nginx's master for its (unprivileged)
# workers; as root they run as `nobody`, who must be able to reach it
sed -e "s/127\.0\.0\.1:6379/127.0.0.1:$INSITE_REDIS_PORT/" \
    -e "s|/var/lib/insite/audit|$INSITE_RUN_DIR/audit|" \
    -e "s|change-me-to-a-long-random-secret|$(cat "$INSITE_RUN_DIR/jwt-secret")|" \
    -e "s|# insite_gdpr_pseudonym_key /etc/insite/gdpr-pseudonym.key;|insite_gdpr_pseudonym_key $INSITE_RUN_DIR/gdpr-pseudonym.key;|" \
    nginx.conf.example > "$ngx_dir/nginx.conf"
chmod 600 "$ngx_dir/nginx.conf"
nginx -p "$ngx_dir" -c "$ngx_dir/nginx.conf" -t -q
nginx -p "$ngx_dir" -c "$ngx_dir/nginx.conf" -g 'daemon off;' &
pids+=($!)

for _ in $(seq 50); do
  curl -fsS -o /dev/null http://127.0.0.1:8080/healthz 2>/dev/null && break
  sleep 0.1
done

# Workers read their settings from INSITE_* variables (services.env) over
# their example configs; the ports match nginx.conf.example's upstreams.
set -a
# shellcheck disable=SC1091
. "$INSITE_RUN_DIR/services.env"
set +a
mkdir -p "$INSITE_RUN_DIR/spool/collector" "$INSITE_RUN_DIR/spool/analytics"

# Yahoo when reachable; without internet the collector says so and falls
# back to recorded responses (when ../shared/fixtures is there) or to a
# clearly labelled simulated random walk.
fixtures=$root/../shared/fixtures/yahoo
feed=${INSITE_PROVIDER_FEED:-auto}
page=http://127.0.0.1:8080/
if [ -d "$fixtures" ]; then
  export INSITE_PROVIDER_REPLAY_FILES="$fixtures/chart_AAPL_1m_2024-10-02.json,$fixtures/chart_TSLA_30m_2021-11-22_prepost.json,$fixtures/chart_MSFT_1d_2021-02-01_to_2022-01-31_div.json"
  export INSITE_PROVIDER_FALLBACK=${INSITE_PROVIDER_FALLBACK:-replay}
  # the symbols there are recordings of, on the collector and the page
  export INSITE_COLLECTOR_SYMBOLS=${INSITE_COLLECTOR_SYMBOLS:-AAPL,MSFT,TSLA}
  page="$page?symbols=$INSITE_COLLECTOR_SYMBOLS"
else
  export INSITE_PROVIDER_FALLBACK=${INSITE_PROVIDER_FALLBACK:-simulated}
fi
say "starting insite-collector (feed: $feed, fallback: $INSITE_PROVIDER_FALLBACK)"
INSITE_PROVIDER_FEED=$feed INSITE_COLLECTOR_HTTP_PORT=8082 \
  INSITE_KAFKA_SPOOL_DIR=$INSITE_RUN_DIR/spool/collector \
  INSITE_KAFKA_CLIENT_ID=insite-collector \
  INSITE_SOCIAL_RSS_ENABLED=${INSITE_SOCIAL_RSS_ENABLED:-false} \
  build/bin/insite-collector -c workers/collector/collector.conf.example \
  > "$INSITE_RUN_DIR/collector.log" 2>&1 &
pids+=($!)

say "starting insite-auditd (audit journal -> PostgreSQL)"
[ -f "$INSITE_RUN_DIR/audit-signing.pem" ] ||
  openssl genpkey -algorithm ed25519 -out "$INSITE_RUN_DIR/audit-signing.pem"
mkdir -p "$INSITE_RUN_DIR/audit-digests" "$INSITE_RUN_DIR/spool/auditd"
INSITE_AUDITD_JOURNAL_DIR=$INSITE_RUN_DIR/audit \
  INSITE_AUDITD_DIGEST_DIR=$INSITE_RUN_DIR/audit-digests \
  INSITE_AUDITD_SIGNING_KEY=$INSITE_RUN_DIR/audit-signing.pem \
  INSITE_AUDITD_PSEUDONYM_KEY=$INSITE_RUN_DIR/gdpr-pseudonym.key \
  INSITE_AUDITD_KAFKA=true \
  INSITE_KAFKA_SPOOL_DIR=$INSITE_RUN_DIR/spool/auditd \
  INSITE_KAFKA_CLIENT_ID=insite-auditd \
  build/bin/insite-auditd -c workers/auditd/auditd.conf.example \
  > "$INSITE_RUN_DIR/auditd.log" 2>&1 &
pids+=($!)

say "starting insite-gdpr (consent, erasure, export on 8085)"
[ -f "$INSITE_RUN_DIR/gdpr-receipts.pem" ] ||
  openssl genpkey -algorithm ed25519 -out "$INSITE_RUN_DIR/gdpr-receipts.pem"
# no backend database here: its targets point at ours (absent tables = empty)
sed "s|host=127.0.0.1 dbname=insitechart|$INSITE_PG_DSN|" workers/gdpr/datamap.json \
  > "$INSITE_RUN_DIR/gdpr-datamap.json"
mkdir -p "$INSITE_RUN_DIR/spool/gdpr"
INSITE_GDPR_DATA_MAP=$INSITE_RUN_DIR/gdpr-datamap.json \
  INSITE_GDPR_PSEUDONYM_KEY=$INSITE_RUN_DIR/gdpr-pseudonym.key \
  INSITE_GDPR_SIGNING_KEY=$INSITE_RUN_DIR/gdpr-receipts.pem \
  INSITE_KAFKA_SPOOL_DIR=$INSITE_RUN_DIR/spool/gdpr \
  INSITE_KAFKA_CLIENT_ID=insite-gdpr \
  build/bin/insite-gdpr \
  > "$INSITE_RUN_DIR/gdpr.log" 2>&1 &
pids+=($!)

say "starting insite-analytics"
lex=$(scripts/lexicons.sh)
eval "export ${lex//$'\n'/ }"
INSITE_ANALYTICS_HTTP_PORT=8083 \
  INSITE_KAFKA_SPOOL_DIR=$INSITE_RUN_DIR/spool/analytics \
  INSITE_KAFKA_CLIENT_ID=insite-analytics \
  INSITE_ANALYTICS_WINDOW_TIME=${INSITE_ANALYTICS_WINDOW_TIME:-received} \
  build/bin/insite-analytics \
  > "$INSITE_RUN_DIR/analytics.log" 2>&1 &
pids+=($!)

say "starting insite-stocks (quotes, bars, watchlists on 8081)"
INSITE_STOCKS_HTTP_PORT=8081 \
  build/bin/insite-stocks -c workers/stocks/stocks.conf.example \
  > "$INSITE_RUN_DIR/stocks.log" 2>&1 &
pids+=($!)

say "starting insite-notify (alerts: rules, templates, delivery)"
mkdir -p "$INSITE_RUN_DIR/spool/notify"
INSITE_NOTIFY_HTTP_PORT=8086 \
  INSITE_KAFKA_SPOOL_DIR=$INSITE_RUN_DIR/spool/notify \
  INSITE_KAFKA_CLIENT_ID=insite-notify \
  build/bin/insite-notify \
  > "$INSITE_RUN_DIR/notify.log" 2>&1 &
pids+=($!)
# Prometheus (Debian's package) scraping nginx and the workers with
# monitoring/prometheus.yml and its alert rules: docs/operations.md
prom_url=""
if command -v prometheus >/dev/null 2>&1; then
  prom_port=9090
  if ! perl -MIO::Socket::INET -e 'exit(IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => 9090, Listen => 1, ReuseAddr => 1) ? 0 : 1)'; then
    prom_port=$(perl -MIO::Socket::INET -e 'print IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => 0, Listen => 1)->sockport')
  fi
  say "starting prometheus on 127.0.0.1:$prom_port"
  mkdir -p "$INSITE_RUN_DIR/prometheus"
  prometheus --config.file="$root/monitoring/prometheus.yml" \
    --storage.tsdb.path="$INSITE_RUN_DIR/prometheus" \
    --web.listen-address="127.0.0.1:$prom_port" \
    > "$INSITE_RUN_DIR/prometheus.log" 2>&1 &
  pids+=($!)
  prom_url="http://127.0.0.1:$prom_port/graph?g0.expr=insite_kafka_consumer_lag"
fi

# A sign-in link for a local demo user (docs/notify.md, "On the page"):
# an HS256 token signed with this installation's secret, 7 days, handed to
# /signin.html in the fragment (not sent to the server, not logged).  Dev
# only: in production the identity provider issues the tokens.
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
demo_user=${INSITE_DEMO_USER:-demo}
now=$(date +%s)
jwt_body=$(printf '{"alg":"HS256","typ":"JWT"}' | b64url).$(printf '{"sub":"%s","iat":%d,"exp":%d}' \
  "$demo_user" "$now" $((now + 7 * 86400)) | b64url)
jwt=$jwt_body.$(printf '%s' "$jwt_body" | openssl dgst -sha256 -hmac "$(cat "$INSITE_RUN_DIR/jwt-secret")" -binary | b64url)
signin="http://127.0.0.1:8080/signin.html?next=$(printf '%s' "${page#http://127.0.0.1:8080}" | sed 's|?|%3F|; s|,|%2C|g; s|=|%3D|g')#token=$jwt"

cat <<INFO

  InsiteChart Edge is running.

  dashboard    $page   (open it in a browser)
  sign in      $signin
               (signs in "$demo_user" for alerts: rules, toasts, /settings.html)
  nginx logs   $ngx_dir/logs/
  health       http://127.0.0.1:8080/healthz
  metrics      http://127.0.0.1:8080/metrics
  Redis        127.0.0.1:$INSITE_REDIS_PORT
  PostgreSQL   $INSITE_PG_DSN
  Kafka        $INSITE_KAFKA_BOOTSTRAP (librdkafka mock cluster)
  collector    http://127.0.0.1:8082/healthz  (log: $INSITE_RUN_DIR/collector.log)
  analytics    http://127.0.0.1:8083/healthz  (log: $INSITE_RUN_DIR/analytics.log)
  stocks       http://127.0.0.1:8081/healthz  (log: $INSITE_RUN_DIR/stocks.log)
  auditd       http://127.0.0.1:8084/healthz  (log: $INSITE_RUN_DIR/auditd.log; journal: $INSITE_RUN_DIR/audit)
  gdpr         http://127.0.0.1:8085/healthz  (log: $INSITE_RUN_DIR/gdpr.log)
  notify       http://127.0.0.1:8086/healthz  (log: $INSITE_RUN_DIR/notify.log; API /api/v1/alerts)

  Ctrl-C stops everything.

INFO
[ -z "$prom_url" ] || printf '  prometheus   %s  (log: %s)\n\n' "$prom_url" "$INSITE_RUN_DIR/prometheus.log"
curl -s http://127.0.0.1:8080/healthz || true

wait "${pids[0]}"
