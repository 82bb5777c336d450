# Alertmanager for the compose stack (deploy/compose.yaml). By default the official image;
# offline, Debian's `prometheus-alertmanager` package on the base of `make base-image`, laid out
# like the official one (/bin/alertmanager, user nobody, data in /alertmanager):
#   docker build -f deploy/docker/alertmanager.Dockerfile -t wine-quality-alertmanager .
#   docker build -f deploy/docker/alertmanager.Dockerfile -t wine-quality-alertmanager \
#     --build-arg FLAVOUR=debian --build-arg DEBIAN_IMAGE=winequality-base:bookworm .
# BuildKit builds only the stage FLAVOUR names, so the offline build pulls nothing.
ARG ALERTMANAGER_IMAGE=prom/alertmanager:v0.27.0
ARG DEBIAN_IMAGE=debian:bookworm-slim
ARG FLAVOUR=official

FROM ${ALERTMANAGER_IMAGE} AS official

FROM ${DEBIAN_IMAGE} AS debian
# hadolint ignore=DL3008
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
       prometheus-alertmanager wget \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
    && ln -s prometheus-alertmanager /usr/bin/alertmanager \
    && mkdir -p /alertmanager \
    && chown nobody:nogroup /alertmanager
WORKDIR /alertmanager
EXPOSE 9093
ENTRYPOINT ["/bin/alertmanager"]
CMD ["--config.file=/etc/alertmanager/alertmanager.yml", "--storage.path=/alertmanager"]

# hadolint ignore=DL3006
FROM ${FLAVOUR}
USER 65534:65534
# Readiness with wget (busybox's in the official image, Debian's here); the compose file probes
# the port it gives the service.
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:9093/-/ready"]
