#!/usr/bin/env bash
# Runs our knock-server --spa (userspace gate and nftables backend) and
# Debian's fwknopd (as a UDP server, -U, and sniffing with pcap, its
# default) under the same SPA loads, inside a network namespace this
# script creates (so fwknopd's iptables commands, our nftables table and all
# traffic stay in it), and writes a comparison table in Markdown.
#
# Usage: sudo bench/compare_spa.sh [OUTPUT.md]   (default: bench/results_spa.md)
# Needs root (ip netns, iptables/nft in the namespace) and fwknopd (package
# fwknop-server). Every load is bounded in count and time; the namespace and
# every process started here are removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${1:-bench/results_spa.md}
# Protected ports: our gate serves PORT itself; the kernel-firewall servers
# (ours with nftables, fwknopd with iptables) open a protected-service each.
PORT=7300
NPORT=7301
KPORT=7302
SPA_PORT=62201
STATS=127.0.0.1:7399
NS=pkspa$$
# tmpfs: our replay cache fsyncs once per batch of accepted packets; fwknopd's digest
# cache is written per packet too. Both measure the rest, not the disk.
WORK=$(mktemp -d /dev/shm/pkspa.XXXXXX)
REL=$PWD/target/release
KEY="kB+G5+KiLS8N2x64DYM+VuPU+Gj7A7uITpF9Y4Ozqms="
HMAC="vxdRyChqWMLurmUWJPUNWLPlMI57H9zvx/Gzdt7sS0FtjArdSOTNzBiw9D3HSVKV64jQv4fCM0BHc9VV3SCrjg=="
PIDS=()

cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  ip netns del "$NS" 2>/dev/null || true
}
trap cleanup EXIT

[ "$(id -u)" -eq 0 ] || { echo "compare_spa.sh: needs root (network namespace, firewall)" >&2; exit 2; }
command -v fwknopd >/dev/null || { echo "compare_spa.sh: fwknopd missing (apt-get install fwknop-server)" >&2; exit 2; }
cargo build --release --bins --quiet

# shellcheck source=bench/common.sh
. "$(dirname "$0")/common.sh"
ip netns add "$NS"
in_ns ip link set lo up



# The loads: name, then knock-bench arguments. Allow-IPs (and sources)
# count up from 127.16.0.0, one per packet; each load gets a fresh server.
SCENARIOS=(
  "latency|--spa-latency-count 50 --count 0"
  "paced-50/s|--spa-latency-count 0 --count 250 --rate 50"
  "paced-200/s|--spa-latency-count 0 --count 1000 --rate 200"
  "full-rate-2000|--spa-latency-count 0 --count 2000 --rate 0"
)

access_conf() { # port
  printf 'SOURCE ANY\nKEY_BASE64 %s\nHMAC_KEY_BASE64 %s\nOPEN_PORTS tcp/%s\nFW_ACCESS_TIMEOUT 300\nMAX_FW_TIMEOUT 300\n' \
    "$KEY" "$HMAC" "$1"
}

bench() { # protected-port, server-pid, json-out, extra args...
  local port=$1 pid=$2 out=$3; shift 3
  in_ns "$REL/knock-bench" --mode spa --protected-port "$port" --spa-port "$SPA_PORT" \
    --spa-key-base64 "$KEY" --spa-hmac-key-base64 "$HMAC" --server-pid "$pid" \
    --time-limit 90s --settle 3s --json --output "$out" "$@"
}

run_ours() { # backend, port, tag, args
  local backend=$1 port=$2 tag=$3 args=$4 pid c0 c1 t0 t1 svc=""
  access_conf "$port" > "$WORK/access.conf"
  rm -f "$WORK/replay"
  if [ "$backend" != userspace ]; then
    ip netns exec "$NS" "$REL/protected-service" --port "$port" --bind 127.0.0.1 --close-after 1 >/dev/null 2>&1 &
    svc=$!; PIDS+=("$svc")
  fi
  RUST_LOG=warn ip netns exec "$NS" "$REL/knock-server" --bind 127.0.0.1 --no-sequence \
    --protected-port "$port" --firewall "$backend" --spa --spa-access "$WORK/access.conf" \
    --spa-port "$SPA_PORT" --spa-replay-cache "$WORK/replay" --stats-listen "$STATS" \
    2>"$WORK/ours-$backend-$tag.log" &
  pid=$!; PIDS+=("$pid")
  for _ in $(seq 100); do in_ns bash -c "exec 3<>/dev/tcp/${STATS%:*}/${STATS#*:}" 2>/dev/null && break; sleep 0.1; done
  c0=$(cpu_ticks "$pid"); t0=$(date +%s.%N)
  # shellcheck disable=SC2086
  bench "$port" "$pid" "$WORK/ours-$backend-$tag.json" --stats "$STATS" $args
  c1=$(cpu_ticks "$pid"); t1=$(date +%s.%N)
  echo "$(( c1 - c0 )) $t0 $t1" > "$WORK/ours-$backend-$tag.cpu"
  kill "$pid"; wait "$pid" || true
  if [ -n "$svc" ]; then kill "$svc"; wait "$svc" 2>/dev/null || true; fi
}

run_fwknopd() { # capture (udp|pcap), tag, args
  local capture=$1 tag=$2 args=$3 pid svc c0 c1 t0 t1 d="$WORK/fwknopd-$1-$2" how ready
  if [ "$capture" = udp ]; then
    # -U: a UDP server on SPA_PORT.
    how=(-U); ready="Kicking off UDP server"
  else
    # pcap on the namespace's lo (its default: PCAP_LOOP_SLEEP 100 ms).
    how=(-i lo); ready="Starting fwknopd main event loop"
  fi
  mkdir -p "$d"
  printf 'FIREWALL_EXE %s;\n' "$(command -v iptables)" > "$d/fwknopd.conf"
  access_conf "$KPORT" > "$d/access.conf"
  chmod 600 "$d/fwknopd.conf" "$d/access.conf"
  in_ns iptables -F INPUT
  in_ns iptables -A INPUT -p tcp --dport "$KPORT" -j DROP
  ip netns exec "$NS" "$REL/protected-service" --port "$KPORT" --bind 127.0.0.1 --close-after 1 >/dev/null 2>&1 &
  svc=$!; PIDS+=("$svc")
  # -f: foreground, logs to stderr.
  ip netns exec "$NS" fwknopd -f "${how[@]}" -c "$d/fwknopd.conf" -a "$d/access.conf" -d "$d/digest.cache" \
    -p "$d/fwknopd.pid" -r "$d" > "$d/log" 2>&1 &
  pid=$!; PIDS+=("$pid")
  wait_for "$d/log" "$ready"
  sleep 0.3
  c0=$(cpu_ticks "$pid"); t0=$(date +%s.%N)
  # shellcheck disable=SC2086
  bench "$KPORT" "$pid" "$d.json" --spa-opened-log "$d/log" $args
  c1=$(cpu_ticks "$pid"); t1=$(date +%s.%N)
  echo "$(( c1 - c0 )) $t0 $t1" > "$d.cpu"
  kill "$pid"; wait "$pid" || true
  kill "$svc"; wait "$svc" 2>/dev/null || true
}

for entry in "${SCENARIOS[@]}"; do
  name=${entry%%|*}; args=${entry#*|}; tag=${name//[^a-zA-Z0-9]/_}
  echo "==> $name: ours (userspace)" >&2
  run_ours userspace "$PORT" "$tag" "$args"
  echo "==> $name: ours (nftables)" >&2
  run_ours nftables "$NPORT" "$tag" "$args"
  echo "==> $name: fwknopd (UDP server)" >&2
  run_fwknopd udp "$tag" "$args"
  echo "==> $name: fwknopd (pcap)" >&2
  run_fwknopd pcap "$tag" "$args"
done

cpu_pct() { # file
  [ -f "$1" ] || { echo "-"; return; }
  read -r ticks t0 t1 < "$1"
  awk -v k="$ticks" -v a="$t0" -v b="$t1" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.0f%%", 100 * k / hz / (b - a) }'
}

{
  echo "| load | measure | knock-server (userspace) | knock-server (nftables) | fwknopd -U (iptables) | fwknopd pcap (iptables) |"
  echo "|---|---|---|---|---|---|"
  for entry in "${SCENARIOS[@]}"; do
    name=${entry%%|*}; tag=${name//[^a-zA-Z0-9]/_}
    u="$WORK/ours-userspace-$tag.json"; n="$WORK/ours-nftables-$tag.json"; k="$WORK/fwknopd-udp-$tag.json"; p="$WORK/fwknopd-pcap-$tag.json"
    row() { # measure, then a formatter applied to each server's report
      local measure=$1; shift
      printf '| %s | %s | %s | %s | %s | %s |\n' "$name" "$measure" "$("$@" "$u")" "$("$@" "$n")" "$("$@" "$k")" "$("$@" "$p")"
    }
    lat() { echo "$(field "$1" latency_median_ms) / $(field "$1" latency_p99_ms) ($(field "$1" latency_samples) samples, $(field "$1" probes_failed) failed)"; }
    opened() { echo "$(field "$1" opened) / $(field "$1" offered) ($(field "$1" lost) lost)"; }
    rate() { field "$1" opened_per_sec; }
    drops() { field "$1" kernel_rcvbuf_drops; }
    cpu() { cpu_pct "${1%.json}.cpu"; }
    case "$name" in
      latency)
        row "packet-to-open median / p99 (ms)" lat
        ;;
      *)
        row "opened / offered (lost)" opened
        row "opened per second" rate
        row "kernel receive-buffer drops" drops
        row "server CPU" cpu
        ;;
    esac
  done
  echo
  echo "Raw reports and logs: $WORK"
} > "$OUT"
cat "$OUT"
