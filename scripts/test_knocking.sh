#!/usr/bin/env bash
# The quick check: knock, verify the protected port opened, read the flag.
#   scripts/test_knocking.sh [IP]        (default 127.0.0.1)
# Environment: KNOCK_SEQUENCE, PROTECTED_PORT, as for the server.
# Exit status: 0 pass, 1 fail.
set -uo pipefail

# shellcheck source=scripts/common.sh
. "$(dirname "$0")/common.sh"
client=$(portknock_bin knock-client) || exit 1

target=${1:-127.0.0.1}
port=${PROTECTED_PORT:-2222}
sequence=${KNOCK_SEQUENCE:-1234,5678,9012}

echo "[*] Knocking on $target and checking port $port"
if ! "$client" --target "$target" --sequence "$sequence" --protected-port "$port" \
  --delay 0.2 --check --wait 0.5; then
  echo "FAIL: port $port did not open after the knock"
  exit 1
fi
banner=$(read_banner "$target" "$port")
if [[ "$banner" == *FLAG\{* ]]; then
  echo "[+] Flag: $(grep -o 'FLAG{[^}]*}' <<<"$banner")"
  echo "PASS"
  exit 0
fi
echo "FAIL: no flag from $target:$port (got: ${banner:-nothing})"
exit 1
