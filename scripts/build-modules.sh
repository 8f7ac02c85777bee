#!/usr/bin/env bash
# Builds the insite nginx modules as dynamic modules into $BUILD/modules/.
#
# Without NGINX_SRC: against the installed Debian nginx, from a copy of the
# source nginx-dev ships (/usr/share/nginx/src) configured with the exact
# flags Debian's nginx was built with (conf_flags), so the .so files load
# into /usr/sbin/nginx.  With NGINX_SRC=/path/to/nginx-1.x: inside that
# source tree, configured --with-compat.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-build}
case $build in /*) ;; *) build=$root/$build ;; esac
mkdir -p "$build/modules"

# one build at a time: concurrent configures of one tree corrupt it
exec 9>"$build/.modules.lock"
flock 9

if [ -n "${NGINX_SRC:-}" ]; then
  src=$NGINX_SRC
  conf=(--with-compat)
else
  src=$build/nginx-src
  if [ ! -x "$src/configure" ] || [ /usr/share/nginx/src/conf_flags -nt "$src/configure" ]; then
    rm -rf "$src"
    cp -r /usr/share/nginx/src "$src"
    touch "$src/configure"
  fi
  # shellcheck disable=SC1091
  . /usr/share/nginx/src/conf_flags
  conf=("${NGX_CONF_FLAGS[@]}")
fi

# COVERAGE=1 (make COVERAGE=1, scripts/test.sh): gcov instrumentation; the
# .gcno/.gcda files live next to the objects under $src/objs/addon/
if [ "${COVERAGE:-}" = 1 ]; then
  conf+=(--with-cc-opt=--coverage --with-ld-opt=--coverage)
fi
# INSITE_WS_TRACE=1: the ws module logs each step of a message's path with
# a microsecond clock (ngx_insite_ws.h); for latency breakdowns only, e.g.
# make BUILD=build/trace INSITE_WS_TRACE=1 modules (bench/ws/trace.py)
if [ "${INSITE_WS_TRACE:-}" = 1 ]; then
  conf+=(--with-cc-opt=-DINSITE_WS_TRACE=1)
fi

cd "$src"
stamp=objs/.insite-configured
want="$(printf '%s\n' "${conf[@]}" "$root" | md5sum) $(cat "$root"/config "$root"/lua/*.lua | md5sum)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || [ ! -f objs/Makefile ]; then
  echo "modules: configuring nginx in $src"
  ./configure "${conf[@]}" --add-dynamic-module="$root" > "$build/nginx-configure.log" 2>&1 || {
    tail -30 "$build/nginx-configure.log" >&2; exit 1; }
  echo "$want" > "$stamp"
fi

echo "modules: building"
make -f objs/Makefile -j"$(nproc)" modules > "$build/nginx-make.log" 2>&1 || {
  grep -E 'error|warning' "$build/nginx-make.log" | head -40 >&2; exit 1; }

# a new inode per file: a running nginx keeps the old one mapped
for so in objs/ngx_http_insite*_module.so; do
  cp "$so" "$build/modules/.$(basename "$so").tmp"
  mv -f "$build/modules/.$(basename "$so").tmp" "$build/modules/$(basename "$so")"
done
ls "$build"/modules/*.so
