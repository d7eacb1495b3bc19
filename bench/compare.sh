#!/usr/bin/env bash
# Runs our knock-server (with each firewall backend) and Debian's knockd
# under the same loads, inside a network namespace this script creates (so
# the kernel backends' rules, knockd's iptables commands and all traffic
# stay in it), and writes a comparison table in Markdown.
#
# Usage: sudo bench/compare.sh [OUTPUT.md]     (default: bench/results.md)
#        SYSTEMS="nftables iptables" sudo bench/compare.sh out.md   (a subset)
#        CONFIG=bench/three-doors.toml sudo bench/compare.sh out.md
#          (our server from a config file: its doors, @PORT@ replaced by the
#          protected port under test; the bench knocks SEQ, so the file's
#          door for SEQ must be the one on @PORT@)
#        REL=/tmp/old sudo bench/compare.sh out.md   (binaries from there)
#        CAPTURE=socket sudo bench/compare.sh out.md
#          (our server's capture source: auto (default: nflog with the
#          kernel backends, packet with the userspace gate as root), nflog,
#          packet or socket, the bound sockets of earlier builds)
#        LOADS="latency seq-50000/s" sudo bench/compare.sh out.md
#          (only these loads, by the names in SCENARIOS)
# Needs root (ip netns, iptables in the namespace). Installs knockd with
# apt-get if it is missing. Every load is bounded in count and time.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${1:-bench/results.md}
SEQ=7001,7002,7003
PORT=7100
# knockd opens the firewall to a protected-service on its own port (our
# userspace gate owns PORT), and our kernel backends to another one.
KPORT=7101
FPORT=7102
SYSTEMS=${SYSTEMS:-userspace nftables iptables knockd}
CONFIG=${CONFIG:-}
CAPTURE=${CAPTURE:-auto}
LOADS=${LOADS:-}
STATS=127.0.0.1:7199
NS=pkbench$$
WORK=$(mktemp -d /tmp/pkbench.XXXXXX)
# REL: where the binaries are (an A/B against an older knock-server: a
# directory with that server beside this knock-bench and protected-service).
REL=${REL:-$PWD/target/release}
PIDS=()

cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  ip netns del "$NS" 2>/dev/null || true
}
trap cleanup EXIT

[ "$(id -u)" -eq 0 ] || { echo "compare.sh: needs root (network namespace, iptables)" >&2; exit 2; }
command -v knockd >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq knockd >/dev/null; }
cargo build --release --bins --quiet

# shellcheck source=bench/common.sh
. "$(dirname "$0")/common.sh"
ip netns add "$NS"
in_ns ip link set lo up



# The loads: name, the systems it is offered to (u: ours with the
# userspace gate, n: nftables, i: iptables, k: knockd), then knock-bench
# arguments. Sources never repeat within a run; each run gets a fresh server.
# knockd forks an iptables per open: the 50k/s loads would only measure the
# backlog, so they are not offered to knockd.
SCENARIOS=(
  "latency|unik|--mode latency --count 200 --gap 1ms"
  "seq-200/s|uk|--mode sequences --count 1000 --rate 200"
  "seq-1000/s|uk|--mode sequences --count 3000 --rate 1000"
  "seq-2000/s|uni|--mode sequences --count 6000 --rate 2000"
  "seq-50000/s|un|--mode sequences --count 150000 --rate 50000"
  "seq-50000/s-gap5ms|u|--mode sequences --count 150000 --rate 50000 --gap 5ms"
  "seq-50000/s-gap1ms|u|--mode sequences --count 150000 --rate 50000 --gap 1ms"
  "interleaved-10000|uk|--mode interleaved --count 10000 --gap 300ms"
  "flood-100k@10k/s|uk|--mode first-flood --count 100000 --rate 10000 --legit 127.0.0.77"
  "flood-1M@full|uk|--mode first-flood --count 1000000 --legit 127.0.0.77"
  "wrong-flood-1M@full|uk|--mode wrong-flood --count 1000000 --legit 127.0.0.78"
)
# Keep only the loads named in LOADS (all when it is empty).
if [ -n "$LOADS" ]; then
  kept=()
  for entry in "${SCENARIOS[@]}"; do
    [[ " $LOADS " == *" ${entry%%|*} "* ]] && kept+=("$entry")
  done
  [ "${#kept[@]}" -gt 0 ] || { echo "compare.sh: no load named in LOADS=$LOADS" >&2; exit 2; }
  SCENARIOS=("${kept[@]}")
fi
# Letter of a system in SCENARIOS.
letter() { case $1 in userspace) echo u;; nftables) echo n;; iptables) echo i;; knockd) echo k;; esac; }

bench() { # protected-port, server-pid, json-out, extra args...
  local port=$1 pid=$2 out=$3; shift 3
  in_ns "$REL/knock-bench" --sequence "$SEQ" --protected-port "$port" --server-pid "$pid" \
    --time-limit 60s --settle 3s --json --output "$out" "$@"
}

run_ours() { # name, args, tag, backend
  local name=$1 args=$2 tag=$3 backend=$4 log="$WORK/$4.log" pid c0 c1 t0 t1 port=$PORT
  [ "$backend" = userspace ] || port=$FPORT
  local doors=(--sequence "$SEQ" --protected-port "$port")
  if [ -n "$CONFIG" ]; then
    sed "s/@PORT@/$port/g" "$CONFIG" > "$WORK/doors-$backend.toml"
    doors=(--config "$WORK/doors-$backend.toml")
  fi
  RUST_LOG=warn ip netns exec "$NS" "$REL/knock-server" --bind 127.0.0.1 "${doors[@]}" \
    --firewall "$backend" --capture "$CAPTURE" --stats-listen "$STATS" 2>"$log" &
  pid=$!; PIDS+=("$pid")
  for _ in $(seq 100); do in_ns bash -c "exec 3<>/dev/tcp/${STATS%:*}/${STATS#*:}" 2>/dev/null && break; sleep 0.1; done
  c0=$(cpu_ticks "$pid"); t0=$(date +%s.%N)
  # shellcheck disable=SC2086
  bench "$port" "$pid" "$WORK/$backend-$tag.json" --stats "$STATS" $args
  c1=$(cpu_ticks "$pid"); t1=$(date +%s.%N)
  echo "$(( c1 - c0 )) $t0 $t1" > "$WORK/$backend-$tag.cpu"
  if [ "$name" = latency ]; then
    # Idle: five seconds with nothing to do must cost (almost) no CPU.
    c0=$(cpu_ticks "$pid"); sleep 5; c1=$(cpu_ticks "$pid")
    echo "$(( c1 - c0 ))" > "$WORK/$backend-idle.ticks"
  fi
  kill "$pid"; wait "$pid" || true
}

run_knockd() { # name, args, tag
  local name=$1 args=$2 tag=$3 pid c0 c1 t0 t1
  in_ns iptables -F INPUT
  in_ns iptables -A INPUT -p tcp --dport "$KPORT" -j DROP
  cat > "$WORK/knockd.conf" <<CONF
[options]
  LogFile = $WORK/knockd-$tag.log
  Interface = lo
[open]
  sequence    = 7001:udp,7002:udp,7003:udp
  seq_timeout = 10
  command     = /usr/sbin/iptables -I INPUT -s %IP% -p tcp --dport $KPORT -j ACCEPT
CONF
  ip netns exec "$NS" knockd -c "$WORK/knockd.conf" -i lo >/dev/null 2>&1 &
  pid=$!; PIDS+=("$pid")
  wait_for "$WORK/knockd-$tag.log" "starting up"
  sleep 0.5
  c0=$(cpu_ticks "$pid"); t0=$(date +%s.%N)
  # shellcheck disable=SC2086
  bench "$KPORT" "$pid" "$WORK/knockd-$tag.json" $args
  in_ns iptables -F INPUT
  c1=$(cpu_ticks "$pid"); t1=$(date +%s.%N)
  echo "$(( c1 - c0 )) $t0 $t1" > "$WORK/knockd-$tag.cpu"
  grep -c "OPEN SESAME" "$WORK/knockd-$tag.log" > "$WORK/knockd-$tag.grants" || true
  # knockd has no counters: the first knocks it logged are what it processed.
  grep -c ": Stage 1" "$WORK/knockd-$tag.log" > "$WORK/knockd-$tag.stage1" || true
  kill "$pid"; wait "$pid" || true
  : "$name"
}

# The protected services knockd and our kernel backends open the firewall to.
for p in "$KPORT" "$FPORT"; do
  ip netns exec "$NS" "$REL/protected-service" --port "$p" --bind 127.0.0.1 --close-after 1 >/dev/null 2>&1 &
  PIDS+=("$!")
done

# name, systems, args of a SCENARIOS entry.
parse() { IFS='|' read -r name offered_to args <<< "$1"; tag=${name//[^a-zA-Z0-9]/_}; }

for entry in "${SCENARIOS[@]}"; do
  parse "$entry"
  for system in $SYSTEMS; do
    [[ $offered_to == *$(letter "$system")* ]] || continue
    echo "==> $name: $system" >&2
    case $system in
      knockd) run_knockd "$name" "$args" "$tag" ;;
      *) run_ours "$name" "$args" "$tag" "$system" ;;
    esac
  done
done

cpu_pct() { # file
  [ -f "$1" ] || { echo "-"; return; }
  read -r ticks t0 t1 < "$1"
  awk -v k="$ticks" -v a="$t0" -v b="$t1" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.0f%%", 100 * k / hz / (b - a) }'
}

# A field of system $1's report for the current load, or "-".
f() { local r="$WORK/$1-$tag.json"; if [ -f "$r" ]; then field "$r" "$2"; else echo "-"; fi; }
# One table row: load, measure, then a command printing a system's cell.
row() { # measure, cell-function
  local line="| $name | $1 |" s
  for s in $SYSTEMS; do line+=" $($2 "$s") |"; done
  echo "$line"
}
c_latency() { echo "$(f "$1" latency_median_ms) / $(f "$1" latency_p99_ms)"; }
c_failed() { f "$1" probes_failed; }
c_idle() { if [ -f "$WORK/$1-idle.ticks" ]; then cat "$WORK/$1-idle.ticks"; else echo "-"; fi; }
c_opened() {
  local offered; offered=$(f "$1" offered)
  if [ "$1" = knockd ]; then
    if [ -f "$WORK/knockd-$tag.grants" ]; then
      local g; g=$(cat "$WORK/knockd-$tag.grants"); echo "$g / $offered ($(( offered - g )))"
    else echo "-"; fi
  else echo "$(f "$1" grants) / $offered ($(f "$1" lost))"; fi
}
c_rate() { echo "$(f "$1" send_rate_pps), $(cpu_pct "$WORK/$1-$tag.cpu")"; }
c_decided() {
  if [ "$1" = knockd ]; then
    local ks="-"; [ -f "$WORK/knockd-$tag.stage1" ] && ks=$(cat "$WORK/knockd-$tag.stage1")
    echo "$(f knockd packets_sent) / $ks"
  else echo "$(f "$1" packets_sent) / $(f "$1" server_decisions)"; fi
}
c_drops() { f "$1" kernel_rcvbuf_drops; }
c_tracked() { [ "$1" = knockd ] && { echo "-"; return; }; echo "$(f "$1" tracked_at_end), $(f "$1" bytes_per_tracked_ip)"; }
c_rss() { echo "$(f "$1" server_peak_rss_kb), $(cpu_pct "$WORK/$1-$tag.cpu")"; }
c_legit() { echo "$(f "$1" legit_got_in) ($(f "$1" legit_attempts))"; }

{
  header="| load | measure |"; rule="|---|---|"
  for s in $SYSTEMS; do
    case $s in knockd) header+=" knockd |";; *) header+=" knock-server ($s) |";; esac
    rule+="---|"
  done
  echo "$header"; echo "$rule"
  for entry in "${SCENARIOS[@]}"; do
    parse "$entry"
    any=""
    for s in $SYSTEMS; do [[ $offered_to == *$(letter "$s")* ]] && any=1; done
    [ -n "$any" ] || continue
    case "$name" in
      latency)
        row "knock-to-open median / p99 (ms)" c_latency
        row "probes that never opened" c_failed
        name=idle; row "CPU ticks in 5 s with no traffic" c_idle
        ;;
      seq-*|interleaved-*)
        row "opened / offered (lost)" c_opened
        row "send rate (pkt/s), server CPU" c_rate
        ;;
      *flood*)
        row "packets sent / decided by the server (knockd: first knocks logged)" c_decided
        row "kernel receive-buffer drops" c_drops
        row "tracked at end, bytes per tracked IP" c_tracked
        row "server peak RSS (kB), CPU" c_rss
        row "legitimate client got in (attempts)" c_legit
        ;;
    esac
  done
  echo
  echo "Raw reports: $WORK"
} > "$OUT"
cat "$OUT"
