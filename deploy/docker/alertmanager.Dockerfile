# Alertmanager for the compose stack (deploy/compose.yaml). By default the official image; offline
# (target `debian`), Debian's `prometheus-alertmanager` package on PYTHON_IMAGE, any Debian
# bookworm image: the base of `make base-image`, as for the Python images. Both are laid out alike
# (/bin/alertmanager, user nobody, data in /alertmanager), so the compose file runs either:
#   docker build -f deploy/docker/alertmanager.Dockerfile -t wine-quality-alertmanager .
#   DOCKER_BUILDKIT=1 docker build --network host --build-arg PYTHON_IMAGE=winequality-base:bookworm \
#     --target debian -f deploy/docker/alertmanager.Dockerfile -t wine-quality-alertmanager .
# BuildKit builds only the stages the target needs, so the offline build pulls nothing.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG ALERTMANAGER_IMAGE=prom/alertmanager:v0.27.0

FROM ${PYTHON_IMAGE} AS debian
# hadolint ignore=DL3008
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
       prometheus-alertmanager wget \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
    && ln -s prometheus-alertmanager /usr/bin/alertmanager \
    && mkdir -p /alertmanager \
    && chown 65534:65534 /alertmanager
WORKDIR /alertmanager
USER 65534:65534
EXPOSE 9093
# Readiness with wget (Debian's here, busybox's in the official image); the compose file probes
# the port it gives the service.
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:9093/-/ready"]
ENTRYPOINT ["/bin/alertmanager"]
CMD ["--config.file=/etc/alertmanager/alertmanager.yml", "--storage.path=/alertmanager"]

# hadolint ignore=DL3006
FROM ${ALERTMANAGER_IMAGE} AS official
USER 65534:65534
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:9093/-/ready"]
