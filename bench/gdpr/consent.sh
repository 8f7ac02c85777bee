#!/usr/bin/env bash
# Consent at the edge: wrk against /gated (insite_gdpr_consent analytics,
# the user has granted it, decisions cached) and /plain (the same location
# without the directive), both behind the gateway's JWT, in one nginx run
# (2 workers), alternating ROUNDS times.  Target: gated >= 0.95 x plain.
#
#   bench/gdpr/consent.sh        SECS=5 CONNS=32 THREADS=2 ROUNDS=3
# Needs wrk, redis-server, the modules (make modules).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
SECS=${SECS:-5} CONNS=${CONNS:-32} THREADS=${THREADS:-2} ROUNDS=${ROUNDS:-3}
work=$(mktemp -d /tmp/insite-bench-consent.XXXXXX)
chmod 755 "$work"
freeport() { perl -MIO::Socket::INET -e 'print IO::Socket::INET->new(Listen=>1,LocalAddr=>"127.0.0.1:0")->sockport'; }
port=$(freeport) rport=$(freeport)
cleanup() {
  [ -f "$work/logs/nginx.pid" ] && kill -QUIT "$(cat "$work/logs/nginx.pid")" 2>/dev/null || true
  [ -n "${redis_pid:-}" ] && kill "$redis_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/logs"
echo ok > "$work/ok.txt"
redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
  --logfile "$work/redis.log" & redis_pid=$!
for _ in $(seq 50); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done
redis-cli -p "$rport" HSET 'insite:consent:{bench}' analytics 1 >/dev/null

token=$(perl -MDigest::SHA=hmac_sha256 -MMIME::Base64=encode_base64url -e '
  my $h = encode_base64url(q({"alg":"HS256","typ":"JWT"}));
  my $p = encode_base64url(q({"sub":"bench","exp":) . (time + 3600) . "}");
  print "$h.$p." . encode_base64url(hmac_sha256("$h.$p", "bench-secret"));')
{
  for m in ngx_http_insite_module ngx_http_insite_ws_module ngx_http_insite_gateway_module ngx_http_insite_gdpr_module; do
    echo "load_module $root/build/modules/$m.so;"
  done
  cat <<CONF
worker_processes 2;
$( [ "$(id -u)" = 0 ] && echo "user root;" )
error_log $work/logs/error.log warn;
pid $work/logs/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    insite_redis 127.0.0.1:$rport;
    insite_gateway_jwt_secret "bench-secret";
    server {
        listen 127.0.0.1:$port;
        root $work;
        location = /gated { insite_gateway_jwt on; insite_gdpr_consent analytics; try_files /ok.txt =404; }
        location = /plain { insite_gateway_jwt on; try_files /ok.txt =404; }
    }
}
CONF
} > "$work/nginx.conf"
nginx -p "$work/" -c "$work/nginx.conf"
sleep 0.5
rps() { wrk -t"$THREADS" -c"$CONNS" -d"${SECS}s" -H "Authorization: Bearer $token" "http://127.0.0.1:$port$1" | awk '/Requests\/sec/ {print $2}'; }
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" "http://127.0.0.1:$port/gated")" = 200 ] ||
  { echo "consent bench: /gated does not answer 200" >&2; exit 1; }
echo "# wrk ${SECS}s, $CONNS connections, $THREADS threads; nginx 2 workers; $ROUNDS rounds"
g=0 p=0
for r in $(seq "$ROUNDS"); do
  a=$(rps /gated); b=$(rps /plain)
  printf 'round %d  gated %10s  plain %10s req/s\n' "$r" "$a" "$b"
  g=$(echo "$g + $a" | bc -l); p=$(echo "$p + $b" | bc -l)
done
printf 'ratio gated/plain: %.3f (target >= 0.95)\n' "$(echo "$g / $p" | bc -l)"
