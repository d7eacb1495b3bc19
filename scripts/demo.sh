#!/usr/bin/env bash
# The five-step demo of port knocking, with the project's own client.
#   scripts/demo.sh [IP]
# Without IP: the address of the container 2_network_port_knocking from
# `docker inspect` when Docker is there, else 127.0.0.1 (a local server,
# e.g. started by scripts/run.sh).
# Environment: KNOCK_SEQUENCE, PROTECTED_PORT, LOCKOUT, as for the server.
# Exits non-zero if any step does not behave as described.
set -uo pipefail

# shellcheck source=scripts/common.sh
. "$(dirname "$0")/common.sh"
client=$(portknock_bin knock-client) || exit 1

container=2_network_port_knocking
target=${1:-}
if [ -z "$target" ] && command -v docker >/dev/null 2>&1; then
  target=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$container" 2>/dev/null || true)
  [ -n "$target" ] && echo "[*] Found $container at $target"
fi
target=${target:-127.0.0.1}
port=${PROTECTED_PORT:-2222}
sequence=${KNOCK_SEQUENCE:-1234,5678,9012}
lockout=${LOCKOUT:-5}
knock=("$client" --target "$target" --sequence "$sequence" --protected-port "$port" --delay 0.2)

failures=0
step() { echo; echo "=== Step $1: $2 ==="; }
ok() { echo "[ok] $*"; }
bad() { echo "[FAILED] $*"; failures=$((failures + 1)); }

step 1 "connecting before knocking fails"
if "${knock[@]}" --check-only --timeout 2; then
  bad "port $port is open before any knock"
else
  ok "port $port is not reachable without knocking"
fi

step 2 "a wrong sequence gets locked out"
if "${knock[@]}" --test-wrong --wait 0.5 --timeout 2; then
  ok "the wrong sequence was refused and the IP locked out"
else
  bad "the wrong sequence did not behave as described"
fi
echo "[*] Waiting ${lockout}s for the lockout to end..."
sleep "$lockout"
sleep 1

step 3 "the correct sequence opens the port"
if "${knock[@]}" --check --wait 0.5 --timeout 2; then
  ok "port $port opened for this address"
else
  bad "port $port did not open after the correct sequence"
fi

step 4 "the port is open and serves the flag"
banner=$(read_banner "$target" "$port")
if [[ "$banner" == *FLAG\{* ]]; then
  echo "$banner"
  ok "flag read: $(grep -o 'FLAG{[^}]*}' <<<"$banner")"
else
  bad "no flag from $target:$port (got: ${banner:-nothing})"
fi

step 5 "connect yourself with netcat"
echo "  knock-client --target $target --sequence $sequence && nc $target $port"
echo "  (the port stays open for your address for the access duration, 30 s by default)"

echo
if [ "$failures" -eq 0 ]; then
  echo "Demo complete: all five steps behaved as described."
  exit 0
fi
echo "Demo FAILED: $failures step(s) did not behave as described."
exit 1
