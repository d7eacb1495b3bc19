# portknock: the knock server and the protected service in one image.
#   docker compose up port_knocking        (see compose.yaml)
# Configuration through the environment: KNOCK_SEQUENCE, PROTECTED_PORT,
# WINDOW, ACCESS_DURATION, LOCKOUT, FLAG, FIREWALL (see
# scripts/start_services.sh). Kernel firewalls need NET_ADMIN.

# --- build: the release binaries, with the locked dependencies -------------
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bins \
 && mkdir -p /out \
 && cp target/release/knock-server target/release/knock-client target/release/protected-service /out/

# --- runtime: slim, with the firewall tools ----------------------------------
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends iptables nftables iproute2 netcat-openbsd procps \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/ /usr/local/bin/
COPY scripts/start_services.sh scripts/common.sh scripts/demo.sh scripts/test_knocking.sh /opt/portknock/scripts/

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
