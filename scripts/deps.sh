#!/usr/bin/env bash
# Installs every build, run and test dependency from Debian's packages when it is
# missing. Idempotent: a second run installs nothing and says so.
set -euo pipefail

pkgs=(
  # build
  make gcc clang pkg-config git ca-certificates
  nginx nginx-dev libpcre2-dev libpcre3-dev zlib1g-dev libssl-dev
  libhiredis-dev librdkafka-dev libpq-dev libjansson-dev libcurl4-openssl-dev
  libxml2-dev libmicrohttpd-dev libconfig-dev
  libsystemd-dev  # sd_notify: Type=notify readiness and watchdog (operations)
  libcairo2-dev libpango1.0-dev poppler-utils  # insite-gdpr's PDF report; pdftotext/pdftoppm in t/714
  # run
  redis-server postgresql
  # test
  perl libtest-base-perl libcmocka-dev kcat curl procps iproute2 libclang-rt-14-dev chromium fonts-dejavu-core
  python3-nltk
  gcovr   # coverage report (scripts/coverage.sh, make coverage)
  prometheus   # promtool: t/811 (config, rules, alert tests), t/813, t/814 (check metrics); run.sh
  libicu-dev g++ python3-aiosmtpd   # insite-notify: ICU MessageFormat (render.cc), SMTP test server
  # packages (scripts/package.sh, scripts/package-test.sh)
  dpkg-dev debhelper lintian mmdebstrap
  # bench
  wrk libnginx-mod-nchan libnghttp2-dev   # libnghttp2: bench/ws publisher over HTTP/2
  # the static nginx build (scripts/build-static-nginx.sh) uses dpkg-source
  # from dpkg-dev, listed with the packages above
)

# npm fetches the sentiment lexicons and the page's chart library; the
# machine images ship Node.js, a bare Debian gets Debian's
if ! command -v npm >/dev/null 2>&1; then
  pkgs+=(nodejs npm)
fi

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "deps: all ${#pkgs[@]} packages present"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "deps: missing packages: ${missing[*]}; run as root (or sudo $0)" >&2
  exit 1
fi

echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# a package's postinst may try to start its service; we start our own on free ports
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
chmod +x /usr/sbin/policy-rc.d
trap 'rm -f /usr/sbin/policy-rc.d' EXIT
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "deps: installed ${#missing[@]} package(s)"
