# Prometheus for the compose stack (deploy/compose.yaml). By default the official image; offline,
# Debian's `prometheus` package on the base of `make base-image`, laid out like the official one
# (/bin/prometheus, user nobody, data in /prometheus), so the compose file runs either:
#   docker build -f deploy/docker/prometheus.Dockerfile -t wine-quality-prometheus .
#   docker build -f deploy/docker/prometheus.Dockerfile -t wine-quality-prometheus \
#     --build-arg FLAVOUR=debian --build-arg DEBIAN_IMAGE=winequality-base:bookworm .
# BuildKit builds only the stage FLAVOUR names, so the offline build pulls nothing.
ARG PROMETHEUS_IMAGE=prom/prometheus:v2.53.4
ARG DEBIAN_IMAGE=debian:bookworm-slim
ARG FLAVOUR=official

FROM ${PROMETHEUS_IMAGE} AS official

FROM ${DEBIAN_IMAGE} AS debian
# hadolint ignore=DL3008
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus wget \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
    && mkdir -p /prometheus \
    && chown nobody:nogroup /prometheus
WORKDIR /prometheus
EXPOSE 9090
ENTRYPOINT ["/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]

# hadolint ignore=DL3006
FROM ${FLAVOUR}
USER 65534:65534
# Readiness with wget (busybox's in the official image, Debian's here); the compose file probes
# the port it gives the service.
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:9090/-/ready"]
