# PostgreSQL for the compose stack (deploy/compose.yaml): the shared feedback store. By default
# the official image; offline (target `debian`), Debian's `postgresql` package (15) on
# PYTHON_IMAGE, any Debian bookworm image: the base of `make base-image`, as for the Python images.
# Both take the official contract, so the compose file runs either: POSTGRES_USER,
# POSTGRES_PASSWORD and POSTGRES_DB initialise PGDATA (/var/lib/postgresql/data, a volume) on
# first start, PGPORT is the port, the arguments go to `postgres`; user postgres (uid 999) or any
# uid owning PGDATA.
#   docker build -f deploy/docker/postgres.Dockerfile -t wine-quality-postgres .
#   DOCKER_BUILDKIT=1 docker build --network host --build-arg PYTHON_IMAGE=winequality-base:bookworm \
#     --target debian -f deploy/docker/postgres.Dockerfile -t wine-quality-postgres .
# BuildKit builds only the stages the target needs, so the offline build pulls nothing.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG POSTGRES_IMAGE=postgres:15-bookworm

FROM ${PYTHON_IMAGE} AS debian
# The official image's uid/gid (999), made before the package would pick one; no `main` cluster
# (the entry point makes one in PGDATA). libnss-wrapper and a socket folder open to all (a tmpfs
# over it takes its mode): any uid, as in the official image.
# hadolint ignore=DL3008
RUN groupadd -r -g 999 postgres \
    && useradd -r -g postgres -u 999 -d /var/lib/postgresql -s /bin/bash postgres \
    && mkdir -p /etc/postgresql-common \
    && echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.conf \
    && apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
       -o Dpkg::Options::=--force-confold postgresql libnss-wrapper \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
    && ln -s /usr/lib/*/libnss_wrapper.so /usr/local/lib/libnss_wrapper.so \
    && mkdir -p /var/lib/postgresql/data /var/run/postgresql \
    && chown -R 999:999 /var/lib/postgresql /var/run/postgresql \
    && chmod 700 /var/lib/postgresql/data \
    && chmod 3777 /var/run/postgresql
COPY deploy/docker/postgres-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
ENV PATH=/usr/lib/postgresql/15/bin:$PATH \
    PGDATA=/var/lib/postgresql/data \
    LANG=C.UTF-8
VOLUME /var/lib/postgresql/data
USER 999:999
EXPOSE 5432
# A user name, so that the probe needs no passwd entry for the uid (it does not log in).
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["pg_isready", "-q", "-h", "127.0.0.1", "-U", "postgres"]
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["postgres"]

# hadolint ignore=DL3006
FROM ${POSTGRES_IMAGE} AS official
USER 999:999
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["pg_isready", "-q", "-h", "127.0.0.1", "-U", "postgres"]
