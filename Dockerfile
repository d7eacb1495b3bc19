# portknock: the knock server and the protected service in one image.
#   docker compose up port_knocking   (compose v2, Debian: docker-compose-plugin)
#   docker-compose up port_knocking   (compose v1, Debian: docker-compose)
# Configuration through the environment: KNOCK_SEQUENCE, PROTECTED_PORT,
# WINDOW, ACCESS_DURATION, LOCKOUT, FLAG, FIREWALL (see
# scripts/start_services.sh). Runs as user portknock; kernel firewalls need
# the container to have NET_ADMIN (compose.yaml: cap_drop ALL, cap_add
# NET_ADMIN), which reaches the programs through file capabilities below.

# --- build: the release binaries (stripped: the release profile), locked deps --
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bins \
 && mkdir -p /out \
 && cp target/release/knock-server target/release/knock-client target/release/protected-service /out/

# --- runtime: slim, with the firewall tools, as an unprivileged user ---------
# A non-root user gets no capability from the container's set at exec, so
# knock-server (netlink grants, the capability check) and the firewall tools
# it runs (iptables-restore, nft: the real files behind the alternatives)
# carry cap_net_admin as a file capability. NET_ADMIN only: capture through
# AF_PACKET (--capture packet) would need NET_RAW too.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends iptables nftables iproute2 netcat-openbsd procps libcap2-bin \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --user-group --no-create-home --shell /usr/sbin/nologin portknock
COPY --from=build /out/ /usr/local/bin/
COPY scripts/start_services.sh scripts/common.sh scripts/demo.sh scripts/test_knocking.sh /opt/portknock/scripts/
RUN setcap cap_net_admin+ep /usr/local/bin/knock-server \
 && setcap cap_net_admin+ep "$(readlink -f /usr/sbin/iptables-restore)" \
 && setcap cap_net_admin+ep "$(readlink -f /usr/sbin/nft)" \
 && apt-get purge -y --auto-remove libcap2-bin
USER portknock

ENV KNOCK_SEQUENCE=1234,5678,9012 \
    PROTECTED_PORT=2222 \
    WINDOW=10 \
    ACCESS_DURATION=30 \
    LOCKOUT=5 \
    FIREWALL=iptables \
    PORTKNOCK_BIN_DIR=/usr/local/bin

EXPOSE 1234/udp 5678/udp 9012/udp 2222/tcp

# Healthy while both programs run.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD pgrep -f /usr/local/bin/knock-server >/dev/null && pgrep -f /usr/local/bin/protected-service >/dev/null || exit 1

STOPSIGNAL SIGTERM
ENTRYPOINT ["/opt/portknock/scripts/start_services.sh"]
