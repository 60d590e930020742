# bms-gateway container image: multi-stage, slim Python base, non-root, the store on a volume.
#
#   docker build -t bms-gateway .
#   docker run -d --name bms-gateway -v /etc/bms-gateway:/etc/bms-gateway:ro \
#     -v bms-gateway-data:/var/lib/bms-gateway -p 127.0.0.1:9108:9108 bms-gateway
#
# See README.md, "Operations", for SocketCAN (--network host) and secrets.

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim-bookworm AS build
WORKDIR /src
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/bms-gateway
COPY pyproject.toml README.md ./
COPY gateway ./gateway
RUN /opt/bms-gateway/bin/pip install --no-cache-dir . \
    && find /opt/bms-gateway -name '__pycache__' -prune -exec rm -rf {} +

FROM python:${PYTHON_VERSION}-slim-bookworm
LABEL org.opencontainers.image.title="bms-gateway" \
      org.opencontainers.image.description="BMS racks (Modbus TCP, CAN) to the EMS (InfluxDB, MQTT)" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 bms \
    && useradd --system --uid 10001 --gid bms --home-dir /var/lib/bms-gateway --no-create-home \
       --shell /usr/sbin/nologin bms \
    && mkdir -p /var/lib/bms-gateway /etc/bms-gateway /run/secrets \
    && chown bms:bms /var/lib/bms-gateway \
    && chmod 0700 /var/lib/bms-gateway
COPY --from=build /opt/bms-gateway /opt/bms-gateway
COPY config/gateway.yaml /etc/bms-gateway/gateway.yaml
# Inside the container the HTTP endpoint listens on every interface of the container's own network,
# so that `-p 127.0.0.1:9108:9108` can publish it; with --network host set it back to 127.0.0.1.
# That address is reachable from the container network, so the gateway asks for a password or an
# explicit opt-out: publish the port to loopback only, or give a secret `http-password` and set
# BMS_GATEWAY__HTTP__PASSWORD_CREDENTIAL=http-password (HTTP Basic auth; /healthz stays open).
ENV PATH=/opt/bms-gateway/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CREDENTIALS_DIRECTORY=/run/secrets \
    BMS_GATEWAY__HTTP__HOST=0.0.0.0 \
    BMS_GATEWAY__HTTP__ALLOW_UNAUTHENTICATED=true \
    BMS_GATEWAY__HTTP__PORT=9108
USER 10001:10001
WORKDIR /var/lib/bms-gateway
VOLUME ["/var/lib/bms-gateway"]
EXPOSE 9108
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('BMS_GATEWAY__HTTP__PORT', '9108'); sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:' + port + '/healthz', timeout=4).status == 200 else 1)"]
# The daemon is PID 1 (exec form, no shell): it gets SIGTERM itself, drains and exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["bms-gateway"]
CMD ["run", "--config", "/etc/bms-gateway/gateway.yaml"]
