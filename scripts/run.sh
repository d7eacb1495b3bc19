#!/usr/bin/env bash
# Runs the whole system on this machine with the defaults: the protected
# service, the knock server (userspace gate: no root needed, the host's
# firewall is not touched) and a client that knocks 1234 -> 5678 -> 9012,
# checks that port 2222 opened and reads the flag. The server keeps running
# until Ctrl-C, so you can knock again yourself (see README).
#   scripts/run.sh          build, start, demo, keep running
#   scripts/run.sh --once   build, start, demo, stop (exit status = demo's)
set -euo pipefail
cd "$(dirname "$0")/.."

once=false
[ "${1:-}" = "--once" ] && once=true

bin_dir=${PORTKNOCK_BIN_DIR:-}
if [ -z "$bin_dir" ]; then
  echo "==> building (release)"
  cargo build --release --locked --quiet
  bin_dir=target/release
fi

service_port=${SERVICE_PORT:-2223}
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

echo "==> protected-service on 127.0.0.1:$service_port (reached only through the gate)"
"$bin_dir/protected-service" --bind 127.0.0.1 --port "$service_port" &
pids+=($!)

echo "==> knock-server: sequence 1234,5678,9012, protected port 2222, userspace gate"
"$bin_dir/knock-server" --firewall userspace --upstream "127.0.0.1:$service_port" &
pids+=($!)

# Wait until the gate answers on 2222 (it resets us: that means it is up).
for _ in $(seq 1 50); do
  if nc -z 127.0.0.1 2222 2>/dev/null || bash -c 'exec 3<>/dev/tcp/127.0.0.1/2222' 2>/dev/null; then break; fi
  sleep 0.1
done

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
