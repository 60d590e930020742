# bms-gateway container image: multi-stage, slim Python base, non-root, the store on a volume.
#
#   docker build -t bms-gateway .
#   docker run -d --name bms-gateway -v /etc/bms-gateway:/etc/bms-gateway:ro \
#     -v bms-gateway-data:/var/lib/bms-gateway bms-gateway
#   docker run --rm -it bms-gateway demo        # simulated racks, no configuration needed
#
# See docs/operations.md, "Docker", for the status page (a password), SocketCAN (--network host) and secrets.
#
# Reproducible: the base image is pinned by digest (the tag is only a label; refresh both with
# `docker buildx imagetools inspect python:3.11-slim-bookworm`, the "Digest:" line of the index), and
# every Python dependency by constraints.txt (the versions the test suite ran with; regenerate it
# with `python scripts/constraints.py`).

ARG BASE_IMAGE=python:3.11-slim-bookworm@sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91

FROM ${BASE_IMAGE} AS build
WORKDIR /src
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_CONSTRAINT=/src/constraints.txt
RUN python -m venv /opt/bms-gateway
COPY constraints.txt pyproject.toml README.md ./
# gateway/ holds the profile library (data/profiles, data/dbc): `bms-gateway profiles list` in the image shows it.
COPY gateway ./gateway
RUN /opt/bms-gateway/bin/pip install --no-cache-dir . \
    && find /opt/bms-gateway -name '__pycache__' -prune -exec rm -rf {} +

FROM ${BASE_IMAGE}
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
# No site configuration is built in: without one mounted at /etc/bms-gateway/gateway.yaml the
# gateway exits 2 saying so (`demo` runs simulated racks, labelled as such, without one).
#
# The HTTP endpoint listens on the container's loopback (the gateway's default), which `-p` cannot
# reach: no endpoint is published without authentication. To publish it, give a secret
# `http-password` and set BMS_GATEWAY__HTTP__HOST=0.0.0.0 and
# BMS_GATEWAY__HTTP__PASSWORD_CREDENTIAL=http-password (HTTP Basic auth; /healthz and /readyz stay
# open for probes). The gateway refuses a non-loopback address without a password.
ENV PATH=/opt/bms-gateway/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CREDENTIALS_DIRECTORY=/run/secrets \
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
