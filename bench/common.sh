# Shared by the comparison scripts (bench/compare.sh, bench/compare_spa.sh).
# shellcheck shell=bash

# Runs a command inside the script's namespace $NS. Foreground only: a
# backgrounded shell function would be a subshell, and its $! not the
# program's pid; background programs use ip netns exec directly.
in_ns() { ip netns exec "$NS" "$@"; }

# CPU time (utime + stime, in clock ticks) of a pid.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# A field of a knock-bench JSON report ("-" when absent).
field() { jq -r --arg f "$2" 'if has($f) then .[$f] | tostring else "-" end' "$1"; }

# Waits (bounded: 10 s) until file $1 contains $2.
wait_for() {
  for _ in $(seq 100); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "$(basename "$0"): timed out waiting for '$2' in $1" >&2; return 1
}
