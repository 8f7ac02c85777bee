#!/usr/bin/env bash
# Builds an nginx with the four insite modules linked in statically
# (--add-module), the README's second build path, into
# $BUILD/static-nginx/sbin/nginx; prints the binary's path on stdout.
#
# The source is Debian's source package of the installed nginx (the same
# version, with Debian's patches): nginx-dev ships headers only.  It is
# fetched with `apt-get source --download-only` through a private apt
# state (deb-src entries for the mirrors of /etc/apt/sources.list*, lists
# and cache under $BUILD/static-nginx/apt), so the machine's apt
# configuration is not changed.  It is configured with Debian's own core
# flags (/usr/share/nginx/src/conf_flags: ssl, realip, stub_status, threads,
# auth_request, v2, ...).
#
# Cached: the source is fetched and unpacked once per nginx version, nginx
# is configured again only when the flags or `config` change, and make
# recompiles only what changed, so a second run takes seconds.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-build}
case $build in /*) ;; *) build=$root/$build ;; esac
out=$build/static-nginx
mkdir -p "$out"

exec 9>"$out/.lock"
flock 9

log() { echo "static-nginx: $*" >&2; }

version=$(dpkg-query -W -f='${Version}' nginx)       # e.g. 1.22.1-9+deb12u11
upstream=${version#*:}
upstream=${upstream%-*}                                  # 1.22.1
src=$out/nginx-$version

# deb-src entries for the mirrors apt already uses, one-line and deb822 forms
apt_sources() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    sed -n 's/^[[:space:]]*deb[[:space:]]/deb-src /p' "$f"
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk '
      function flush() {
        if (types ~ /(^| )deb( |$)/ && enabled != "no" && uris != "")
          { n = split(uris, u, " "); m = split(suites, s, " ")
            for (i = 1; i <= n; i++) for (j = 1; j <= m; j++)
              printf "deb-src %s%s %s %s\n", (signed != "" ? "[signed-by=" signed "] " : ""),
                     u[i], s[j], comps }
        types = uris = suites = comps = signed = enabled = "" }
      /^[[:space:]]*#/ { next }
      /^[[:space:]]*$/ { flush(); next }
      { key = tolower($1); sub(/:$/, "", key); $1 = ""; sub(/^ +/, "")
        if (key == "types") types = $0; else if (key == "uris") uris = $0
        else if (key == "suites") suites = $0; else if (key == "components") comps = $0
        else if (key == "signed-by") signed = $0; else if (key == "enabled") enabled = tolower($0) }
      END { flush() }' "$f"
  done
}

fetch_source() {
  local apt=$out/apt dl=$out/download
  mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$dl"
  apt_sources > "$apt/sources.list"
  [ -s "$apt/sources.list" ] || { log "no deb entries in /etc/apt/sources.list*"; exit 1; }
  local opts=(-o "Dir::Etc::SourceList=$apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
              -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache"
              -o Debug::NoLocking=1 -o APT::Sandbox::User=root)
  log "fetching the source package of nginx $version"
  apt-get "${opts[@]}" update -qq >&2
  # the installed version first; a mirror may index a security update's
  # source it does not serve, then the newest other Debian revision of the
  # same upstream release (same orig tarball, Debian's patches of that
  # revision)
  local v got=
  for v in "$version" $(apt-cache "${opts[@]}" showsrc nginx \
                        | sed -n "s/^Version: \(.*\)$/\1/p" | sort -rV \
                        | grep -vxF "$version" | grep -F "${upstream}-" || true); do
    if (cd "$dl" && apt-get "${opts[@]}" source --download-only -qq "nginx=$v" >&2); then
      got=$v
      break
    fi
    log "nginx=$v: source not served, trying another revision of $upstream"
  done
  [ -n "$got" ] || { log "no source package of nginx $upstream could be fetched"; exit 1; }
  [ "$got" = "$version" ] || log "using the source of nginx $got (installed: $version)"
  rm -rf "$src.tmp"
  dpkg-source --no-check -x "$dl/nginx_${got#*:}.dsc" "$src.tmp" >&2
  mv "$src.tmp" "$src"
}

[ -x "$src/configure" ] || fetch_source

# shellcheck disable=SC1091
. /usr/share/nginx/src/conf_flags
conf=("${NGX_CONF_FLAGS[@]}" --add-module="$root")

cd "$src"
stamp=objs/.insite-configured
want="$(printf '%s\n' "${conf[@]}" | md5sum) $(cat "$root"/config "$root"/lua/*.lua | md5sum)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || [ ! -f objs/Makefile ]; then
  log "configuring nginx $upstream with --add-module"
  ./configure "${conf[@]}" > "$out/configure.log" 2>&1 || {
    tail -30 "$out/configure.log" >&2; exit 1; }
  echo "$want" > "$stamp"
fi

log "building"
make -f objs/Makefile -j"$(nproc)" binary > "$out/make.log" 2>&1 || {
  grep -E 'error|warning' "$out/make.log" | head -40 >&2; exit 1; }

mkdir -p "$out/sbin"
cp objs/nginx "$out/sbin/.nginx.tmp"
mv -f "$out/sbin/.nginx.tmp" "$out/sbin/nginx"
echo "$out/sbin/nginx"
