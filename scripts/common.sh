# Shared by the scripts: where the portknock binaries are.
# shellcheck shell=bash

# Prints the path of binary $1: $PORTKNOCK_BIN_DIR first, then PATH, then
# this checkout's release and debug builds.
portknock_bin() {
  local name=$1 root
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  if [ -n "${PORTKNOCK_BIN_DIR:-}" ] && [ -x "$PORTKNOCK_BIN_DIR/$name" ]; then
    echo "$PORTKNOCK_BIN_DIR/$name"
  elif command -v "$name" >/dev/null 2>&1; then
    command -v "$name"
  elif [ -x "$root/target/release/$name" ]; then
    echo "$root/target/release/$name"
  elif [ -x "$root/target/debug/$name" ]; then
    echo "$root/target/debug/$name"
  else
    echo "error: $name not found: build with 'cargo build --release' or set PORTKNOCK_BIN_DIR" >&2
    return 2
  fi
}

# Prints what the service at $1:$2 sends (5 s at most), over bash's
# /dev/tcp so no extra tool is needed.
read_banner() {
  # shellcheck disable=SC2016 # expanded by the inner bash, from its arguments
  timeout 5 bash -c 'exec 3<>"/dev/tcp/$1/$2" && cat <&3' _ "$1" "$2" 2>/dev/null
}
