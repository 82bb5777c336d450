# Alertmanager for the compose stack (deploy/compose.yaml). By default the official image;
# offline, Debian's `prometheus-alertmanager` package on the base of `make base-image`, laid out
# like the official one (/bin/alertmanager, user nobody, data in /alertmanager):
#   docker build -f deploy/docker/alertmanager.Dockerfile -t wine-quality-alertmanager deploy/docker
#   docker build -f deploy/docker/alertmanager.Dockerfile -t wine-quality-alertmanager \
#     --build-arg FLAVOUR=debian --build-arg DEBIAN_IMAGE=winequality-base:bookworm deploy/docker
# BuildKit builds only the stage FLAVOUR names, so the offline build pulls nothing.
ARG ALERTMANAGER_IMAGE=prom/alertmanager:v0.27.0
ARG DEBIAN_IMAGE=debian:bookworm-slim
ARG FLAVOUR=official

FROM ${ALERTMANAGER_IMAGE} AS official

FROM ${DEBIAN_IMAGE} AS debian
# hadolint ignore=DL3008
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
       prometheus-alertmanager \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
    && ln -s prometheus-alertmanager /usr/bin/alertmanager \
    && mkdir -p /alertmanager \
    && chown nobody:nogroup /alertmanager
WORKDIR /alertmanager
USER nobody
EXPOSE 9093
ENTRYPOINT ["/bin/alertmanager"]
CMD ["--config.file=/etc/alertmanager/alertmanager.yml", "--storage.path=/alertmanager"]

# hadolint ignore=DL3006
FROM ${FLAVOUR}
