# Prometheus for the compose stack (deploy/compose.yaml). By default the official image; offline
# (target `debian`), Debian's `prometheus` package on PYTHON_IMAGE, any Debian bookworm image: the
# base of `make base-image`, as for the Python images. Both are laid out alike (/bin/prometheus,
# user nobody, data in /prometheus), so the compose file runs either:
#   docker build -f deploy/docker/prometheus.Dockerfile -t wine-quality-prometheus .
#   DOCKER_BUILDKIT=1 docker build --network host --build-arg PYTHON_IMAGE=winequality-base:bookworm \
#     --target debian -f deploy/docker/prometheus.Dockerfile -t wine-quality-prometheus .
# BuildKit builds only the stages the target needs, so the offline build pulls nothing.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG PROMETHEUS_IMAGE=prom/prometheus:v2.53.4

FROM ${PYTHON_IMAGE} AS debian
# The UI loads moment-timezone-with-data.min.js only: the package's data/ (every tz release
# unpacked, about 200 MB) goes.
# hadolint ignore=DL3008
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus wget \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /usr/share/javascript/moment-timezone/data \
    && mkdir -p /prometheus \
    && chown 65534:65534 /prometheus
WORKDIR /prometheus
USER 65534:65534
EXPOSE 9090
# Readiness with wget (Debian's here, busybox's in the official image); the compose file probes
# the port it gives the service.
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:9090/-/ready"]
ENTRYPOINT ["/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]

# hadolint ignore=DL3006
FROM ${PROMETHEUS_IMAGE} AS official
USER 65534:65534
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:9090/-/ready"]
