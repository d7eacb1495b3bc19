#!/usr/bin/env bash
# Regenerates the SPA vectors with the real fwknop client and checks each
# against the real fwknopd inside a network namespace made here (its
# iptables rules live and die with it). Writes OUTPUT (default: a file in
# /tmp), never vectors.json itself: compare, run tests/spa/vectors.rs with
# it, then copy it over if you mean to. See README.md beside this script.
#
#   sudo tests/data/spa/regenerate.sh [OUTPUT]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-/tmp/spa-vectors-$$.json}"

[ "$(id -u)" -eq 0 ] || { echo "regenerate.sh: needs root (network namespace)" >&2; exit 2; }
for tool in fwknop fwknopd python3 ip iptables; do
  command -v "$tool" >/dev/null || { echo "regenerate.sh: $tool missing (apt-get install fwknop-client fwknop-server iproute2 iptables python3)" >&2; exit 2; }
done
version="$(fwknop --version 2>&1 | head -1)"
case "$version" in
  *2.6.10*) ;;
  *) echo "regenerate.sh: warning: the vectors were made with fwknop 2.6.10, this is: $version" >&2 ;;
esac

ns="pkspa$$"
cleanup() { ip netns del "$ns" 2>/dev/null || true; }
trap cleanup EXIT
ip netns add "$ns"
python3 "$here/regenerate.py" "$out" "$ns"
