#!/usr/bin/env bash
# Builds the image and runs the demo against a container, as a new user
# would, when a Docker engine can run here; otherwise says exactly what it
# skipped and why (exit 0; --require makes a skip exit 1).
#
# It never touches the host's network or firewall: as root it starts its
# own dockerd inside a network namespace (pk-docker) with --iptables=false,
# --ip6tables=false and no default bridge, and the compose network is moved
# to 198.51.100.0/24 by scripts/docker-test.override.yaml (never the seed's
# 172.21.0.0/24). The demo runs from inside that namespace.
#
# Needs: docker (docker.io), dockerd, compose v2 (docker-compose-plugin) or
# v1 (docker-compose), and the base images rust:1-bookworm and
# debian:bookworm-slim in the engine's store (DOCKER_TEST_DATA_ROOT,
# default /var/lib/docker): no registry is contacted when they are missing.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

require=false
[ "${1:-}" = --require ] && require=true
ns=pk-docker
run_dir=$(mktemp -d /tmp/pk-docker.XXXXXX)
sock="$run_dir/docker.sock"
data_root=${DOCKER_TEST_DATA_ROOT:-/var/lib/docker}
dockerd_pid=""
compose=()

log() { echo "[docker-test] $*"; }
skip() {
  log "SKIPPED: $*"
  log "SKIPPED: the image build, the container and demo.sh against it did not run"
  cleanup
  if $require; then exit 1; fi
  exit 0
}
cleanup() {
  if [ ${#compose[@]} -gt 0 ]; then
    "${compose[@]}" down --volumes --remove-orphans >/dev/null 2>&1 || true
  fi
  if [ -n "$dockerd_pid" ]; then
    kill -TERM "$dockerd_pid" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.2; done
  fi
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$run_dir"
}
trap cleanup EXIT

[ "$(id -u)" -eq 0 ] || skip "not root: cannot start a dockerd of our own in a network namespace"
command -v docker >/dev/null || skip "no docker client (Debian package docker.io)"
command -v dockerd >/dev/null || skip "no dockerd (Debian package docker.io)"
if docker compose version >/dev/null 2>&1; then
  compose_cmd=(docker compose)
elif command -v docker-compose >/dev/null; then
  compose_cmd=(docker-compose)
else
  skip "no compose: docker compose (docker-compose-plugin) or docker-compose (docker-compose)"
fi
if pgrep -x dockerd >/dev/null && [ "$data_root" = /var/lib/docker ]; then
  skip "a dockerd already runs on $data_root; stop it or set DOCKER_TEST_DATA_ROOT to a store with the base images"
fi

ip netns add "$ns" || skip "cannot create network namespace $ns"
ip -n "$ns" link set lo up
log "starting dockerd in namespace $ns (--iptables=false, no default bridge, store $data_root)"
ip netns exec "$ns" dockerd --host "unix://$sock" --exec-root "$run_dir/exec" \
  --pidfile "$run_dir/dockerd.pid" --data-root "$data_root" \
  --iptables=false --ip6tables=false --bridge=none >"$run_dir/dockerd.log" 2>&1 &
dockerd_pid=$!
export DOCKER_HOST="unix://$sock"
for _ in $(seq 1 100); do docker info >/dev/null 2>&1 && break; sleep 0.2; done
docker info >/dev/null 2>&1 || skip "dockerd did not start: $(tail -3 "$run_dir/dockerd.log" | tr '\n' ' ')"

missing=()
for image in rust:1-bookworm debian:bookworm-slim; do
  docker image inspect "$image" >/dev/null 2>&1 || missing+=("$image")
done
[ ${#missing[@]} -eq 0 ] || skip "base images missing from $data_root: ${missing[*]} (docker pull them where a registry is reachable, or make them locally)"

compose=("${compose_cmd[@]}" -f compose.yaml -f scripts/docker-test.override.yaml -p portknock-docker-test)
log "building the image (${compose_cmd[*]} build)"
start=$(date +%s)
"${compose[@]}" build port_knocking || { log "FAILED: image build"; exit 1; }
log "image built in $(( $(date +%s) - start )) s, size $(docker image inspect -f '{{.Size}}' portknock:latest | awk '{printf "%.0f MB", $1/1e6}')"
"${compose[@]}" up -d port_knocking || { log "FAILED: compose up"; exit 1; }
container=portknock_docker_test
log "container user: $(docker exec "$container" id -un), capabilities: $(docker exec "$container" grep CapEff /proc/1/status)"
for _ in $(seq 1 50); do
  docker logs "$container" 2>&1 | grep -q "knock server ready" && break
  sleep 0.2
done
status=0
ip netns exec "$ns" scripts/demo.sh 198.51.100.40 || status=$?
docker logs "$container" 2>&1 | tail -5
if [ "$status" -eq 0 ]; then
  log "PASSED: demo.sh's five steps against the container"
else
  log "FAILED: demo.sh exited $status"
fi
exit "$status"
