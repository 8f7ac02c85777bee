# shellcheck shell=bash
# Shared by the gdpr benches (source it): the nginx.conf they measure, so
# the audited and the plain locations are the same in every bench.
#
#   gdpr_conf MODULES WORK PORT FSYNC [BACKEND]
#
# prints a configuration loading the project's four modules from MODULES,
# with its journal in WORK/journal (fsync FSYNC), a pseudonym key
# WORK/psn.key when PSEUDONYM=1 (random, written if missing), and one
# server on 127.0.0.1:PORT serving WORK/ok.txt at /audited (audited, user
# from X-User) and /plain; with
# BACKEND, also /api/audited and /api/plain proxied to a second server on
# that port.  GDPR_CONF_MAIN: lines for the main context, default two
# worker processes (callgrind.sh: one process, master_process off);
# GDPR_CONF_ROTATE: the journal's rotate size, default 256m.

gdpr_conf() {
  local modules=$1 work=$2 port=$3 fsync=$4 backend=${5:-} m
  if [ "${PSEUDONYM:-0}" = 1 ] && [ ! -s "$work/psn.key" ]; then
    head -c 32 /dev/urandom > "$work/psn.key"
  fi
  for m in ngx_http_insite_module ngx_http_insite_ws_module \
           ngx_http_insite_gateway_module ngx_http_insite_gdpr_module; do
    echo "load_module $modules/$m.so;"
  done
  echo "${GDPR_CONF_MAIN:-worker_processes 2;}"
  [ "$(id -u)" != 0 ] || echo "user root;"
  cat <<CONF
error_log $work/logs/error.log warn;
pid $work/logs/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    insite_gdpr_journal $work/journal;
    insite_gdpr_fsync $fsync;
    insite_gdpr_rotate_size ${GDPR_CONF_ROTATE:-256m};
    $( [ "${PSEUDONYM:-0}" = 1 ] && echo "insite_gdpr_pseudonym_key $work/psn.key;" )
    server {
        listen 127.0.0.1:$port;
        root $work;
        location = /audited { insite_gdpr_audit on; insite_gdpr_audit_user \$http_x_user; try_files /ok.txt =404; }
        location = /plain   { try_files /ok.txt =404; }
CONF
  # what an audited API looks like: proxied to a backend
  [ -z "$backend" ] || cat <<CONF
        location = /api/audited { insite_gdpr_audit on; insite_gdpr_audit_user \$http_x_user;
                                  proxy_pass http://127.0.0.1:$backend/data; }
        location = /api/plain   { proxy_pass http://127.0.0.1:$backend/data; }
    }
    server {
        listen 127.0.0.1:$backend;
        location = /data { return 200 '{"symbol":"AAPL","price":187.43}'; }
CONF
  echo "    }"
  echo "}"
}
