#!/usr/bin/env bash
# Runs the whole system on this machine with the defaults: the protected
# service, the knock server (userspace gate: no root needed, the host's
# firewall is not touched) and a client that knocks 1234 -> 5678 -> 9012,
# checks that port 2222 opened and reads the flag. The server keeps running
# until Ctrl-C, so you can knock again yourself (see README).
#   scripts/run.sh          build, start, demo, keep running
#   scripts/run.sh --once   build, start, demo, stop (exit status = demo's)
# If the service or the server does not start (port 2222 or 2223 taken,
# another copy running), it says which and exits 1 without knocking: the
# answer on 2222 would then come from someone else.
set -euo pipefail
cd "$(dirname "$0")/.."

once=false
[ "${1:-}" = "--once" ] && once=true

bin_dir=${PORTKNOCK_BIN_DIR:-}
if [ -z "$bin_dir" ]; then
  echo "==> building (release; the first build takes a few minutes)"
  cargo build --release --locked
  bin_dir=target/release
fi

service_port=${SERVICE_PORT:-2223}
pids=()
logs=$(mktemp -d)
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$logs"
}
trap cleanup EXIT INT TERM

# Waits (10 s at most) until program $1 (pid $2) printed $3 into log $4;
# fails clearly if it exits first or never gets there.
await_start() {
  local name=$1 pid=$2 needle=$3 log=$4
  for _ in $(seq 1 100); do
    if grep -q "$needle" "$log" 2>/dev/null; then return 0; fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "error: $name did not start (its message is above); is port 2222 or $service_port taken, or another copy of run.sh running?" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "error: $name did not report ready within 10s (RUST_LOG below info hides that line)" >&2
  exit 1
}

echo "==> protected-service on 127.0.0.1:$service_port (reached only through the gate)"
"$bin_dir/protected-service" --bind 127.0.0.1 --port "$service_port" \
  > >(tee "$logs/service" ) &
pids+=($!)
await_start protected-service "${pids[-1]}" "listening on" "$logs/service"

echo "==> knock-server: sequence 1234,5678,9012, protected port 2222, userspace gate"
"$bin_dir/knock-server" --firewall userspace --upstream "127.0.0.1:$service_port" \
  2> >(tee "$logs/server" >&2) &
pids+=($!)
await_start knock-server "${pids[-1]}" "knock server ready" "$logs/server"

echo "==> knock-client"
status=0
"$bin_dir/knock-client" --target 127.0.0.1 --check || status=$?
if [ "$status" -eq 0 ]; then
  echo "==> reading the flag"
  "$bin_dir/knock-client" --target 127.0.0.1 --quiet && timeout 5 bash -c 'exec 3<>/dev/tcp/127.0.0.1/2222; cat <&3' || status=$?
fi

if $once; then
  exit "$status"
fi
echo
echo "The server is running. Knock again with:"
echo "  $bin_dir/knock-client --target 127.0.0.1 && nc 127.0.0.1 2222"
echo "Press Ctrl-C to stop."
wait
