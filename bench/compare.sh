#!/usr/bin/env bash
# Runs our knock-server and Debian's knockd under the same loads, inside a
# network namespace this script creates (so knockd's iptables commands and
# all traffic stay in it), and writes a comparison table in Markdown.
#
# Usage: sudo bench/compare.sh [OUTPUT.md]     (default: bench/results.md)
# Needs root (ip netns, iptables in the namespace). Installs knockd with
# apt-get if it is missing. Every load is bounded in count and time.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${1:-bench/results.md}
SEQ=7001,7002,7003
PORT=7100
# knockd opens the firewall to a protected-service on its own port (our
# userspace gate owns PORT).
KPORT=7101
STATS=127.0.0.1:7199
NS=pkbench$$
WORK=$(mktemp -d /tmp/pkbench.XXXXXX)
REL=$PWD/target/release
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

ip netns add "$NS"
in_ns() { ip netns exec "$NS" "$@"; }
in_ns ip link set lo up

# CPU time (utime + stime, in clock ticks) of a pid.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# A field of a knock-bench JSON report.
field() { jq -r --arg f "$2" 'if has($f) then .[$f] | tostring else "-" end' "$1"; }

# Waits (bounded) until file $1 contains $2.
wait_for() {
  for _ in $(seq 100); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "compare.sh: timed out waiting for '$2' in $1" >&2; return 1
}

# The loads: name, then knock-bench arguments. Sources never repeat within
# a run; each run gets a fresh server.
SCENARIOS=(
  "latency|--mode latency --count 200 --gap 1ms"
  "seq-200/s|--mode sequences --count 1000 --rate 200"
  "seq-1000/s|--mode sequences --count 3000 --rate 1000"
  "seq-50000/s|--mode sequences --count 150000 --rate 50000"
  "interleaved-10000|--mode interleaved --count 10000 --gap 300ms"
  "flood-100k@10k/s|--mode first-flood --count 100000 --rate 10000 --legit 127.0.0.77"
  "flood-1M@full|--mode first-flood --count 1000000 --legit 127.0.0.77"
  "wrong-flood-1M@full|--mode wrong-flood --count 1000000 --legit 127.0.0.78"
)
# knockd forks an iptables per open: the 50k/s load would only measure the
# backlog, so it is not offered to knockd.
KNOCKD_SKIP="seq-50000/s"

bench() { # protected-port, server-pid, json-out, extra args...
  local port=$1 pid=$2 out=$3; shift 3
  in_ns "$REL/knock-bench" --sequence "$SEQ" --protected-port "$port" --server-pid "$pid" \
    --time-limit 60s --settle 3s --json --output "$out" "$@"
}

run_ours() { # name, args
  local name=$1 args=$2 log="$WORK/ours.log" pid c0 c1 t0 t1
  RUST_LOG=warn ip netns exec "$NS" "$REL/knock-server" --bind 127.0.0.1 --sequence "$SEQ" --protected-port "$PORT" \
    --firewall userspace --stats-listen "$STATS" 2>"$log" &
  pid=$!; PIDS+=("$pid")
  for _ in $(seq 100); do in_ns bash -c "exec 3<>/dev/tcp/${STATS%:*}/${STATS#*:}" 2>/dev/null && break; sleep 0.1; done
  c0=$(cpu_ticks "$pid"); t0=$(date +%s.%N)
  # shellcheck disable=SC2086
  bench "$PORT" "$pid" "$WORK/ours-$3.json" --stats "$STATS" $args
  c1=$(cpu_ticks "$pid"); t1=$(date +%s.%N)
  echo "$(( c1 - c0 )) $t0 $t1" > "$WORK/ours-$3.cpu"
  if [ "$name" = latency ]; then
    # Idle: five seconds with nothing to do must cost (almost) no CPU.
    c0=$(cpu_ticks "$pid"); sleep 5; c1=$(cpu_ticks "$pid")
    echo "$(( c1 - c0 ))" > "$WORK/ours-idle.ticks"
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
  c1=$(cpu_ticks "$pid"); t1=$(date +%s.%N)
  echo "$(( c1 - c0 )) $t0 $t1" > "$WORK/knockd-$tag.cpu"
  grep -c "OPEN SESAME" "$WORK/knockd-$tag.log" > "$WORK/knockd-$tag.grants" || true
  # knockd has no counters: the first knocks it logged are what it processed.
  grep -c ": Stage 1" "$WORK/knockd-$tag.log" > "$WORK/knockd-$tag.stage1" || true
  kill "$pid"; wait "$pid" || true
  : "$name"
}

# The protected service knockd opens the firewall to.
ip netns exec "$NS" "$REL/protected-service" --port "$KPORT" --bind 127.0.0.1 --close-after 1 >/dev/null 2>&1 &
PIDS+=("$!")

for entry in "${SCENARIOS[@]}"; do
  name=${entry%%|*}; args=${entry#*|}; tag=${name//[^a-zA-Z0-9]/_}
  echo "==> $name: ours" >&2
  run_ours "$name" "$args" "$tag"
  if [ "$name" != "$KNOCKD_SKIP" ]; then
    echo "==> $name: knockd" >&2
    run_knockd "$name" "$args" "$tag"
  fi
done

cpu_pct() { # file
  [ -f "$1" ] || { echo "-"; return; }
  read -r ticks t0 t1 < "$1"
  awk -v k="$ticks" -v a="$t0" -v b="$t1" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.0f%%", 100 * k / hz / (b - a) }'
}

{
  echo "| load | measure | knock-server (userspace) | knockd |"
  echo "|---|---|---|---|"
  for entry in "${SCENARIOS[@]}"; do
    name=${entry%%|*}; tag=${name//[^a-zA-Z0-9]/_}
    o="$WORK/ours-$tag.json"; k="$WORK/knockd-$tag.json"
    kg="-"; [ -f "$WORK/knockd-$tag.grants" ] && kg=$(cat "$WORK/knockd-$tag.grants")
    kf() { if [ -f "$k" ]; then field "$k" "$1"; else echo "-"; fi; }
    offered=$(field "$o" offered)
    klost="-"; [ "$kg" != "-" ] && klost=$(( offered - kg ))
    case "$name" in
      latency)
        echo "| $name | knock-to-open median / p99 (ms) | $(field "$o" latency_median_ms) / $(field "$o" latency_p99_ms) | $(kf latency_median_ms) / $(kf latency_p99_ms) |"
        echo "| $name | probes that never opened | $(field "$o" probes_failed) | $(kf probes_failed) |"
        echo "| idle | CPU ticks in 5 s with no traffic | $(cat "$WORK/ours-idle.ticks") | - |"
        ;;
      seq-*|interleaved-*)
        echo "| $name | opened / offered (lost) | $(field "$o" grants) / $offered ($(field "$o" lost)) | $kg / $offered ($klost) |"
        echo "| $name | send rate (pkt/s), server CPU | $(field "$o" send_rate_pps), $(cpu_pct "$WORK/ours-$tag.cpu") | $(kf send_rate_pps), $(cpu_pct "$WORK/knockd-$tag.cpu") |"
        ;;
      *flood*)
        ks="-"; [ -f "$WORK/knockd-$tag.stage1" ] && ks=$(cat "$WORK/knockd-$tag.stage1")
        echo "| $name | packets sent / decided by the server (knockd: first knocks logged) | $(field "$o" packets_sent) / $(field "$o" server_decisions) | $(kf packets_sent) / $ks |"
        echo "| $name | kernel receive-buffer drops | $(field "$o" kernel_rcvbuf_drops) | $(kf kernel_rcvbuf_drops) |"
        echo "| $name | tracked at end, bytes per tracked IP | $(field "$o" tracked_at_end), $(field "$o" bytes_per_tracked_ip) | - |"
        echo "| $name | server peak RSS (kB), CPU | $(field "$o" server_peak_rss_kb), $(cpu_pct "$WORK/ours-$tag.cpu") | $(kf server_peak_rss_kb), $(cpu_pct "$WORK/knockd-$tag.cpu") |"
        echo "| $name | legitimate client got in (attempts) | $(field "$o" legit_got_in) ($(field "$o" legit_attempts)) | $(kf legit_got_in) ($(kf legit_attempts)) |"
        ;;
    esac
  done
  echo
  echo "Raw reports: $WORK"
} > "$OUT"
cat "$OUT"
