#!/usr/bin/env bash
# Builds the Debian package: target/debian/portknock_<version>-1_<arch>.deb.
#
#   scripts/build-deb.sh              # release build, then the package
#   scripts/build-deb.sh --no-build   # package the release build already there (CI)
#
# Man pages and shell completions are generated from the release binaries'
# own clap definitions (their hidden --generate-man / --generate-completions)
# into target/assets/, then `cargo deb --no-build` packs what
# [package.metadata.deb] in Cargo.toml lists. Needs cargo-deb
# (`cargo install cargo-deb --locked`).
set -euo pipefail
cd "$(dirname "$0")/.."

build=1
case "${1:-}" in
  --no-build) build=0 ;;
  "") ;;
  *) echo "usage: $0 [--no-build]" >&2; exit 2 ;;
esac

if ! cargo deb --version >/dev/null 2>&1; then
  echo "error: cargo-deb is missing: cargo install cargo-deb --locked" >&2
  exit 1
fi
if [ "$build" -eq 1 ]; then
  cargo build --release --locked --bins
fi

bins=(knock-server knock-client protected-service knockctl)
assets=target/assets
rm -rf "$assets"
mkdir -p "$assets/man" "$assets/completions"/{bash,zsh,fish}
for bin in "${bins[@]}"; do
  exe="target/release/$bin"
  [ -x "$exe" ] || { echo "error: $exe is missing: build with cargo build --release --bins" >&2; exit 1; }
  "$exe" --generate-man "$assets/man" >/dev/null
  for shell in bash zsh fish; do
    "$exe" --generate-completions "$shell" "$assets/completions/$shell" >/dev/null
  done
  # bash-completion looks a command up by its bare name.
  mv "$assets/completions/bash/$bin.bash" "$assets/completions/bash/$bin"
done
gzip -9n "$assets"/man/*.1

cargo deb --no-build --locked -p portknock
