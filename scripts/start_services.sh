#!/usr/bin/env bash
# The container's entry point: starts the protected service and the knock
# server, logs both to stdout, forwards SIGTERM/SIGINT so the server removes
# its firewall rules, and exits as soon as either program dies.
#
# Configuration (environment):
#   KNOCK_SEQUENCE   knock ports, in order          (1234,5678,9012)
#   PROTECTED_PORT   TCP port kept closed           (2222)
#   WINDOW           seconds for the whole sequence (10)
#   ACCESS_DURATION  seconds the port stays open    (30)
#   LOCKOUT          seconds a wrong knock locks out (5)
#   FLAG             what the protected service serves
#   FIREWALL         iptables | nftables | userspace | auto (iptables)
#   BIND             listen address (all addresses)
#
# With a kernel firewall the service listens on PROTECTED_PORT itself and
# the kernel drops strangers; with FIREWALL=userspace the server's gate owns
# PROTECTED_PORT and proxies granted connections to the service on
# SERVICE_PORT (PROTECTED_PORT + 1 unless set).
set -uo pipefail

# shellcheck source=scripts/common.sh
. "$(dirname "$0")/common.sh"
server_bin=$(portknock_bin knock-server) || exit 2
service_bin=$(portknock_bin protected-service) || exit 2

sequence=${KNOCK_SEQUENCE:-1234,5678,9012}
protected_port=${PROTECTED_PORT:-2222}
firewall=${FIREWALL:-iptables}
bind_args=()
[ -n "${BIND:-}" ] && bind_args=(--bind "$BIND")
[ -n "${FLAG:-}" ] && export FLAG

log() { echo "[start_services] $*"; }

if [ "$firewall" = userspace ]; then
  service_port=${SERVICE_PORT:-$((protected_port + 1))}
  service_args=(--port "$service_port" --bind 127.0.0.1)
  gate_args=(--upstream "127.0.0.1:$service_port")
else
  service_args=(--port "$protected_port" "${bind_args[@]}")
  gate_args=()
fi

log "starting protected-service (${service_args[*]})"
"$service_bin" "${service_args[@]}" 2>&1 &
service_pid=$!

log "starting knock-server (firewall $firewall, sequence $sequence, protected port $protected_port)"
"$server_bin" \
  --sequence "$sequence" \
  --protected-port "$protected_port" \
  --window "${WINDOW:-10}" \
  --access-duration "${ACCESS_DURATION:-30}" \
  --lockout "${LOCKOUT:-5}" \
  --firewall "$firewall" \
  "${bind_args[@]}" "${gate_args[@]}" 2>&1 &
server_pid=$!

stopping=false
# shellcheck disable=SC2317 # called by the trap
stop() {
  stopping=true
  log "stopping: SIGTERM to knock-server ($server_pid) and protected-service ($service_pid)"
  kill -TERM "$server_pid" "$service_pid" 2>/dev/null
}
trap stop TERM INT

# Wait until either program exits (or a signal arrives and stops both).
status=0
wait -n "$server_pid" "$service_pid" || status=$?
if ! $stopping; then
  log "a program exited (status $status): stopping the other"
  kill -TERM "$server_pid" "$service_pid" 2>/dev/null
fi
# Let the server finish removing its rules.
wait "$server_pid" 2>/dev/null; server_status=$?
wait "$service_pid" 2>/dev/null
if $stopping; then
  log "stopped"
  exit "$server_status"
fi
exit $((status == 0 ? 1 : status))
