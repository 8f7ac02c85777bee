#!/usr/bin/env bash
# Builds the Debian packages into build/deb/ and checks them with lintian:
#
#   libnginx-mod-http-insite_*.deb   the four nginx modules (dh_nginx: load
#                                    files in modules-available, enabled in
#                                    the core-first order, nginx ABI dependency)
#   insite-workers_*.deb             the workers, /etc/insite/*.conf, systemd
#                                    units, migrations, Lua scripts, lexicons
#
# Builds from a copy of the tree (git ls-files) so the work tree stays clean.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out=$root/build/deb
work=$root/build/deb-src

"$root/scripts/deps.sh" >/dev/null
rm -rf "$work" && mkdir -p "$work/insite-edge" "$out"
(cd "$root" && git ls-files -z --cached --others --exclude-standard |
   xargs -0 cp --parents -t "$work/insite-edge")
cd "$work/insite-edge"
dpkg-buildpackage -us -uc -b > "$work/build.log" 2>&1 || {
  tail -40 "$work/build.log" >&2; echo "package: dpkg-buildpackage failed ($work/build.log)" >&2; exit 1; }
lintian --fail-on error,warning --allow-root "$work"/*.changes
echo "package: lintian clean"
rm -f "$out"/*.deb
mv "$work"/*.deb "$out/"
ls -1 "$out"/*.deb
