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
scripts/services.sh start
# shellcheck disable=SC1091
. "$INSITE_RUN_DIR/services.env"

say "starting nginx on 127.0.0.1:8080"
mkdir -p "$ngx_dir/logs"
ln -sfn "$root/build/modules" "$ngx_dir/modules"
sed -e "s/127\.0\.0\.1:6379/127.0.0.1:$INSITE_REDIS_PORT/" \
    nginx.conf.example > "$ngx_dir/nginx.conf"
nginx -p "$ngx_dir" -c "$ngx_dir/nginx.conf" -t -q
nginx -p "$ngx_dir" -c "$ngx_dir/nginx.conf" -g 'daemon off;' &
pids+=($!)

for _ in $(seq 50); do
  curl -fsS -o /dev/null http://127.0.0.1:8080/healthz 2>/dev/null && break
  sleep 0.1
done

cat <<INFO

  InsiteChart Edge is running.

  nginx        http://127.0.0.1:8080/          (logs: $ngx_dir/logs/)
  health       http://127.0.0.1:8080/healthz
  metrics      http://127.0.0.1:8080/metrics
  Redis        127.0.0.1:$INSITE_REDIS_PORT
  PostgreSQL   $INSITE_PG_DSN
  Kafka        $INSITE_KAFKA_BOOTSTRAP (librdkafka mock cluster)

  Ctrl-C stops everything.

INFO
curl -s http://127.0.0.1:8080/healthz || true

wait "${pids[0]}"
