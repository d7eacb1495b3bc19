#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need
# (as root, when missing), then builds and runs every test with the locked
# dependencies. Privileged tests (network namespaces, iptables, nftables)
# run when this is run as root; in CI (CI set) they must not be skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests use: command -> package.
declare -A needed=(
  [iptables]=iptables
  [nft]=nftables
  [nc]=netcat-openbsd
  [ip]=iproute2
  [setpriv]=util-linux
  [shellcheck]=shellcheck
  [fwknop]=fwknop-client
  [fwknopd]=fwknop-server
  [docker-compose]=docker-compose
  [systemd-analyze]=systemd
  [man]=man-db
  [setcap]=libcap2-bin
)
missing=()
for cmd in "${!needed[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${needed[$cmd]}")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "==> installing test dependencies: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "WARNING: missing ${missing[*]} and not root: the tests that need them will say so" >&2
  fi
fi

echo "==> shellcheck"
shellcheck -x scripts/*.sh bench/*.sh .ci/run tests/data/spa/*.sh packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm

echo "==> cargo test (the workspace: the library, its binaries and bench/, knock-bench)"
# The criterion benchmarks, once each as a smoke test (no timing).
cargo test --locked --bench core
# The integration tests run knock-bench, another package's binary, which
# `cargo test` does not build for them: build every binary first.
cargo build --locked --bins
# Four test threads: most tests wait on real servers and namespaces rather
# than compute, and two cores keep up with that.
cargo test --locked --lib --bins --tests -- --test-threads "${TEST_THREADS:-4}"
