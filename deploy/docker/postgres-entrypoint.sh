#!/bin/sh
# The entry point of postgres.Dockerfile's `debian` target: the official image's contract, kept
# minimal. On first start (no PG_VERSION in PGDATA) it makes the cluster with superuser
# POSTGRES_USER (default postgres), password POSTGRES_PASSWORD (required) for TCP connections
# (scram-sha-256; the Unix socket trusts its own user) and the database POSTGRES_DB (default
# POSTGRES_USER); then it runs `postgres` with the given arguments (`-c listen_addresses=...`).
# The port is PGPORT's, as in the official image.
set -eu
: "${PGDATA:=/var/lib/postgresql/data}"
: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
export PGDATA

# Run as any uid (compose's `user:`), as the official image does: initdb and single-user mode
# need the uid to have a name, and /etc/passwd is read-only.
if ! getent passwd "$(id -u)" >/dev/null 2>&1; then
    NSS_WRAPPER_PASSWD=$(mktemp)
    NSS_WRAPPER_GROUP=$(mktemp)
    echo "postgres:x:$(id -u):$(id -g):PostgreSQL:$PGDATA:/bin/false" >"$NSS_WRAPPER_PASSWD"
    echo "postgres:x:$(id -g):" >"$NSS_WRAPPER_GROUP"
    LD_PRELOAD=/usr/local/lib/libnss_wrapper.so
    export LD_PRELOAD NSS_WRAPPER_PASSWD NSS_WRAPPER_GROUP
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -z "${POSTGRES_PASSWORD:-}" ]; then
        echo "postgres: POSTGRES_PASSWORD is required to initialise $PGDATA" >&2
        exit 1
    fi
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$pwfile" -E UTF8 --locale=C.UTF-8 \
        --auth-local=trust --auth-host=scram-sha-256 >/dev/null
    rm -f "$pwfile"
    # Every address, as the official image: listen_addresses decides which one answers.
    echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
    if [ "$POSTGRES_DB" != postgres ]; then
        quoted=$(printf '%s' "$POSTGRES_DB" | sed 's/"/""/g')
        echo "CREATE DATABASE \"$quoted\";" | postgres --single -D "$PGDATA" postgres >/dev/null
    fi
    echo "postgres: initialised $PGDATA (user $POSTGRES_USER, database $POSTGRES_DB)"
fi

case "${1:-}" in
    "" | -*) set -- postgres "$@" ;;
esac
exec "$@"
