#!/usr/bin/env bash
# Collector publish-path benchmark: Kafka producer throughput to the mock
# cluster (target >= 100k msg/s of 200-byte events) and lua/publish.lua
# throughput into Redis (target >= 50k msg/s), through the runtime calls the
# collector uses.  Uses the services in $INSITE_RUN_DIR/services.env when
# they run, else starts its own (and stops them at the end).
#
#   bench/collector/run.sh [KAFKA_MESSAGES] [REDIS_MESSAGES]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
kn=${1:-500000}
rn=${2:-100000}

make -s build/lib/libinsite.a
mkdir -p build/bench
# shellcheck disable=SC2046
cc -std=gnu11 -O2 -g -D_GNU_SOURCE -Iworkers/lib -o build/bench/collector-bench \
  bench/collector/bench.c build/lib/libinsite.a \
  $(pkg-config --cflags --libs hiredis rdkafka libpq jansson libcurl libmicrohttpd libconfig libxml-2.0 libcrypto) -lpthread -lm

run_dir=${INSITE_RUN_DIR:-$root/build/run}
started=
if [ ! -r "$run_dir/services.env" ] || ! grep -q INSITE_KAFKA_BOOTSTRAP "$run_dir/services.env" \
   || ! grep -q INSITE_REDIS_PORT "$run_dir/services.env"; then
  run_dir=$(mktemp -d /tmp/insite-bench.XXXXXX)
  export INSITE_RUN_DIR=$run_dir
  scripts/services.sh start redis kafka >/dev/null
  started=1
  trap 'scripts/services.sh stop redis kafka >/dev/null; rm -rf "$run_dir"' EXIT
fi
# shellcheck disable=SC1091
. "$run_dir/services.env"

echo "machine: $(nproc) cores, $(uname -sr), librdkafka $(pkg-config --modversion rdkafka), $(redis-server --version | awk '{print $3}')"
cmd="build/bench/collector-bench kafka $INSITE_KAFKA_BOOTSTRAP $kn"
echo "\$ $cmd"
$cmd
# one round trip per message (1 and 8 connections), then pipelines of 100
for args in "1 1" "8 1" "1 100" "2 100"; do
  cmd="build/bench/collector-bench redis $INSITE_REDIS_PORT $rn $args"
  echo "\$ $cmd"
  $cmd
done
redis-cli -p "$INSITE_REDIS_PORT" --scan --pattern 'insite-bench:*' | xargs -r -n 500 redis-cli -p "$INSITE_REDIS_PORT" DEL >/dev/null
[ -z "$started" ] || echo "(services started for this run and stopped again)"
