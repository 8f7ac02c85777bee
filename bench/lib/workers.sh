# shellcheck shell=bash
# Shared by the benches (source it): counters of an nginx's worker processes,
# read from /proc, so a bench can report what a location costs per request.
# CPU time per request moves far less than req/s or latency when other load
# shares the machine: a worker preempted by someone else's build is not
# charged for the time it waits.
#
#   workers_sum PIDFILE cpu        user + system CPU ticks of the workers
#   workers_sum PIDFILE FIELD      a field of /proc/<pid>/io (syscw, wchar...)
#   workers_us_per_req TICKS N     ticks spent on N requests -> microseconds
#                                  per request (2 decimals)

workers_hz=$(getconf CLK_TCK)

workers_sum() {
  local pidfile=$1 what=$2 t=0 p u s
  for p in $(pgrep -P "$(cat "$pidfile")"); do
    if [ "$what" = cpu ]; then
      read -r u s < <(cut -d' ' -f14,15 "/proc/$p/stat")
      t=$((t + u + s))
    else
      t=$((t + $(awk -v f="$what:" '$1 == f {print $2}' "/proc/$p/io")))
    fi
  done
  echo "$t"
}

workers_us_per_req() {
  awk -v t="$1" -v hz="$workers_hz" -v n="$2" 'BEGIN { printf "%.2f", t * 1e6 / hz / n }'
}
