#!/usr/bin/env bash
# Install test of the Debian packages in a throwaway Debian 12 root.
#
# A minimal bookworm root made by mmdebstrap from the machine's own apt
# sources (cached as a tarball under /var/cache/insite-ci), with nginx from
# Debian.  Inside it, as a fleet would:
#   apt install ./libnginx-mod-http-insite_*.deb ./insite-workers_*.deb
#   the modules are enabled core first; nginx -t passes with no hand editing
#   nginx (master as root, workers as www-data) serves /healthz with the core
#     module talking to the test run's Redis
#   insite-collector runs the way its unit would (User=insite, the unit's
#     Environment= lines, ExecStart) and its /healthz answers
#   systemd-analyze verify is clean for every unit; security exposure printed
#   apt purge leaves no file behind that the install added
# systemd is not PID 1 in the root: the units are read and verified, and the
# worker is started with their user and environment by setpriv.
#
# Needs the test services (INSITE_REDIS_PORT, INSITE_PG_DSN,
# INSITE_KAFKA_BOOTSTRAP from scripts/services.sh) and build/deb/*.deb
# (scripts/package.sh).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
deb=$root/build/deb
cache=${INSITE_CI_CACHE:-/var/cache/insite-ci}
tarball=$cache/bookworm-nginx.tar
: "${INSITE_REDIS_PORT:?run under scripts/test.sh (services)}" "${INSITE_PG_DSN:?}"

ok=0 fail=0
check() {  # description command...
  if "${@:2}"; then echo "ok - $1"; ok=$((ok + 1)); else echo "not ok - $1"; fail=$((fail + 1)); fi
}

ls "$deb"/libnginx-mod-http-insite_*.deb "$deb"/insite-workers_*.deb >/dev/null

# the packages' runtime libraries come with the root, so the test installs
# only our two packages and needs no download (the cache key names them)
runtime_libs=procps,libicu72,libstdc++6,libcairo2,libpango-1.0-0,libpangocairo-1.0-0,fonts-dejavu-core,libhiredis0.14,librdkafka1,libpq5,libjansson4,libcurl4,libmicrohttpd12,libconfig9,libxml2,libsystemd0,libssl3
tarball=$cache/bookworm-nginx-$(echo "$runtime_libs" | md5sum | cut -c1-8).tar
mkdir -p "$cache"
if [ ! -s "$tarball" ]; then
  echo "package-test: making a Debian 12 root (cached in $tarball)"
  sources=$(ls /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)
  [ -n "$sources" ] || sources=/etc/apt/sources.list
  mmdebstrap --quiet --variant=apt --mode=root --format=tar \
    --include=nginx,curl,ca-certificates,systemd,util-linux,adduser,openssl,$runtime_libs \
    bookworm "$tarball.tmp" "$sources"
  mv "$tarball.tmp" "$tarball"
fi

r=$(mktemp -d /tmp/insite-pkgroot.XXXXXX)
cleanup() {
  [ -f "$r/run/nginx.pid" ] && kill "$(cat "$r/run/nginx.pid")" 2>/dev/null || true
  [ -n "${wpid:-}" ] && kill "$wpid" 2>/dev/null || true
  sleep 0.5
  for m in proc dev/pts dev sys; do umount -l "$r/$m" 2>/dev/null || true; done
  rm -rf "$r"
}
trap cleanup EXIT
tar -C "$r" -xf "$tarball"
mount -t proc proc "$r/proc"
mount --bind /dev "$r/dev"
mount --bind /dev/pts "$r/dev/pts"
mount --bind /sys "$r/sys"
cp /etc/resolv.conf "$r/etc/resolv.conf" 2>/dev/null || true
printf '#!/bin/sh\nexit 101\n' > "$r/usr/sbin/policy-rc.d"; chmod +x "$r/usr/sbin/policy-rc.d"
in_root() { chroot "$r" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }

# nginx's own runtime state (/var/lib/nginx/*, made at its first start) and
# the package manager's records are not ours
skip='^/(proc|sys|dev|run|tmp|var/(lib/(apt|dpkg|systemd|nginx)|cache|log))(/|$)'
in_root find / -xdev | grep -Ev "$skip" | sort > "$r/tmp/before.txt"

cp "$deb"/libnginx-mod-http-insite_*.deb "$deb"/insite-workers_*.deb "$r/tmp/"
echo "package-test: apt install (dependencies from Debian)"
in_root sh -c 'DEBIAN_FRONTEND=noninteractive apt-get install -y -qq /tmp/*.deb' \
  > "$r/tmp/apt.log" 2>&1 || { tail -30 "$r/tmp/apt.log"; exit 1; }

en=$(cd "$r/etc/nginx/modules-enabled" && ls | grep insite | tr '\n' ' ')
echo "modules-enabled: $en"
check "the core module's load file comes first" \
  test "$(cd "$r/etc/nginx/modules-enabled" && ls | grep insite | head -1)" = "40-mod-http-insite.conf"
check "four insite modules enabled" test "$(echo $en | wc -w)" -eq 4
check "nginx -t passes on the stock configuration" in_root nginx -t -q
check "audit journal directory belongs to www-data" \
  test "$(in_root stat -c %U:%G:%a /var/lib/insite/audit)" = "www-data:insite-audit:2770"

PKGTEST_PORT=${PKGTEST_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
cat > "$r/etc/nginx/conf.d/insite-test.conf" <<CONF
insite_redis 127.0.0.1:$INSITE_REDIS_PORT connect_timeout=1s command_timeout=500ms;
server {
    listen 127.0.0.1:$PKGTEST_PORT;
    location = /healthz { insite_healthz; }
}
CONF
check "nginx -t with an insite server" in_root nginx -t -q
in_root nginx
hz=""
for _ in $(seq 50); do
  hz=$(curl -fsS "http://127.0.0.1:$PKGTEST_PORT/healthz" 2>/dev/null) && break; sleep 0.2
done
echo "nginx /healthz: $hz"
check "nginx /healthz answers ok" grep -q '"status":"ok"' <<<"$hz"
check "nginx workers run as www-data" \
  bash -c "ps -o user= --ppid \$(cat $r/run/nginx.pid) | grep -qx www-data"

# the collector as its unit runs it: User=, Environment=, ExecStart=
unit=$r/lib/systemd/system/insite-collector.service
user=$(sed -n 's/^User=//p' "$unit")
exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
mapfile -t envs < <(sed -n 's/^Environment=//p' "$unit")
sd=$(sed -n 's/^StateDirectory=//p' "$unit")
in_root install -d -o "$user" -g "$user" "/var/lib/$sd"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
chroot "$r" /usr/bin/env -i PATH=/usr/bin:/bin "${envs[@]}" \
  INSITE_REDIS_PORT="$INSITE_REDIS_PORT" INSITE_PG_DSN="$INSITE_PG_DSN" \
  INSITE_KAFKA_BOOTSTRAP="${INSITE_KAFKA_BOOTSTRAP:-}" INSITE_PROVIDER_FEED=simulated \
  INSITE_COLLECTOR_SYMBOLS=PKGT INSITE_COLLECTOR_HTTP_PORT=$port \
  INSITE_COLLECTOR_SOURCE_SERVICE=pkgtest INSITE_SOCIAL_RSS_ENABLED=false \
  setpriv --reuid="$user" --regid="$user" --init-groups $exec_start \
  > "$r/tmp/collector.log" 2>&1 &
wpid=$!
whz=""
for _ in $(seq 100); do
  whz=$(curl -fsS "http://127.0.0.1:$port/healthz" 2>/dev/null) && break; sleep 0.2
done
echo "insite-collector /healthz: $whz"
check "insite-collector, started as its unit says, answers /healthz" test -n "$whz"
uid=$(in_root id -u "$user")
check "and runs as $user (uid $uid)" bash -c "ps -o uid= -p $wpid | grep -qw $uid"
kill "$wpid"; wait "$wpid" 2>/dev/null || true; wpid=""

for u in "$r"/lib/systemd/system/insite-*.service; do
  out=$(systemd-analyze verify --root="$r" "/lib/systemd/system/$(basename "$u")" 2>&1 |
        grep -v -e 'Failed to .*proc/' -e 'Cannot add dependency job' || true)
  check "systemd-analyze verify $(basename "$u")${out:+: $out}" test -z "$out"
done
for u in insite-collector insite-analytics insite-auditd insite-stocks insite-notify insite-gdpr; do
  systemd-analyze security --offline=yes --root="$r" "$u.service" 2>/dev/null |
    tail -1 | sed "s/^/security $u: /" || true
done

kill "$(cat "$r/run/nginx.pid")"; sleep 0.5
echo "package-test: apt purge"
in_root sh -c 'DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq libnginx-mod-http-insite insite-workers && apt-get autoremove --purge -y -qq' \
  >> "$r/tmp/apt.log" 2>&1 || { tail -20 "$r/tmp/apt.log"; exit 1; }
in_root find / -xdev | grep -Ev "$skip" | sort > "$r/tmp/after.txt"
left=$(comm -13 "$r/tmp/before.txt" "$r/tmp/after.txt" | grep -v -e '^/tmp' -e '^/etc/nginx/conf.d/insite-test.conf$' || true)
check "purge leaves nothing behind${left:+: $left}" test -z "$left"
check "no insite user or group left" bash -c "! grep -q '^insite' $r/etc/passwd $r/etc/group"

echo "$ok passed, $fail failed"
[ "$fail" -eq 0 ]
