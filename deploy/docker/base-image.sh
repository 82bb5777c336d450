#!/usr/bin/env bash
# The offline base image (`make base-image`): Debian bookworm from Debian's own packages
# (debootstrap minbase + python3, python3-venv, ca-certificates), with this machine's CA bundle,
# for building every image here without a registry:
#   deploy/docker/base-image.sh [NAME]        (default winequality-base:bookworm)
# Idempotent and cached, cheapest first:
#   1. NAME exists with this CA bundle: nothing to do;
#   2. the rootfs image NAME-rootfs exists, or its tarball is in the cache folder
#      ($WINEQ_CACHE_DIR, else ${XDG_CACHE_HOME:-~/.cache}/winequality/): import it, add the CA
#      bundle (seconds);
#   3. otherwise debootstrap (about 3 minutes, needs root or `sudo -n`, and Debian's mirror) and
#      cache it.
# The tarball holds no host-specific file: the CA bundle goes in a layer of its own, so a new
# bundle costs a two-second rebuild, not a debootstrap.
# Environment: DOCKER (default /usr/bin/docker, Debian's client), DEBIAN_MIRROR, CA_BUNDLE,
# ROOTFS_DIR (an existing debootstrap of the same packages to cache instead of running one; it is
# slimmed in place).
set -euo pipefail

NAME=${1:-${BASE_IMAGE:-winequality-base:bookworm}}
DOCKER=${DOCKER:-/usr/bin/docker}
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PACKAGES=python3,python3-venv,ca-certificates
CACHE_DIR=${WINEQ_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/winequality}
TARBALL=$CACHE_DIR/debian-$SUITE-minbase-python3.tar.gz
ROOTFS_IMAGE=${NAME%%:*}:${SUITE}-rootfs
# The rootfs is root's (debootstrap, then reading /etc/shadow for the tarball).
SUDO=
[ "$(id -u)" = 0 ] || SUDO="sudo -n"

ca_bundle() {
    # pip's certificate first: where pip passes TLS checks, so will pip and uv in the image.
    local cert=${CA_BUNDLE:-${PIP_CERT:-}}
    if [ -z "$cert" ]; then
        cert=$(python3 -m pip config get global.cert 2>/dev/null || true)
    fi
    echo "${cert:-/etc/ssl/certs/ca-certificates.crt}"
}

# One maker at a time (parallel test workers, `make images` beside the tests): the others wait
# and then find the image made.
mkdir -p "$CACHE_DIR"
exec 9>>"$CACHE_DIR/.base-image.lock"
flock 9

CA=$(ca_bundle)
[ -r "$CA" ] || { echo "base-image: CA bundle $CA not readable (set CA_BUNDLE)" >&2; exit 1; }
CA_SHA=$(sha256sum "$CA" | cut -c1-64)
LABEL=org.winequality.ca-sha256

if [ "$("$DOCKER" image inspect -f "{{ index .Config.Labels \"$LABEL\" }}" "$NAME" 2>/dev/null)" = "$CA_SHA" ]; then
    echo "base-image: $NAME is up to date"
    exit 0
fi

slim() {
    # What debian:bookworm-slim leaves out (man pages, docs but the copyrights, translations,
    # the package cache and lists), now and for any later `apt-get install` in a build.
    local root=$1
    $SUDO rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin \
        "$root"/var/lib/apt/lists/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
        "$root"/usr/share/locale/*
    $SUDO find "$root"/usr/share/doc -mindepth 1 -not -name copyright -not -type d -delete
    $SUDO find "$root"/usr/share/doc -mindepth 1 -type d -empty -delete
    $SUDO tee "$root"/etc/dpkg/dpkg.cfg.d/winequality-slim >/dev/null <<'EOF'
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
EOF
}

write_tarball() {
    local root=$1 tmp
    mkdir -p "$CACHE_DIR"
    tmp=$(mktemp "$TARBALL.XXXXXX")
    $SUDO tar -C "$root" --numeric-owner -c . | gzip -1 >"$tmp"
    chmod 644 "$tmp"
    mv "$tmp" "$TARBALL"
    echo "base-image: cached $TARBALL ($(du -h "$TARBALL" | cut -f1))"
}

if ! "$DOCKER" image inspect "$ROOTFS_IMAGE" >/dev/null 2>&1; then
    if [ ! -s "$TARBALL" ]; then
        if [ -n "${ROOTFS_DIR:-}" ]; then
            root=$ROOTFS_DIR
        else
            $SUDO true || { echo "base-image: debootstrap needs root (or sudo -n)" >&2; exit 1; }
            command -v debootstrap >/dev/null || { echo "base-image: apt-get install debootstrap" >&2; exit 1; }
            tmp_root=$(mktemp -d "${TMPDIR:-/tmp}/wineq-rootfs.XXXXXX")
            trap '$SUDO rm -rf "$tmp_root"' EXIT
            root=$tmp_root
            echo "base-image: debootstrap $SUITE into $root (about 3 minutes)"
            $SUDO debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$root" "$MIRROR" \
                >"$root.log" 2>&1 || { tail -20 "$root.log" >&2; exit 1; }
            rm -f "$root.log"
        fi
        slim "$root"
        write_tarball "$root"
    fi
    echo "base-image: importing $TARBALL as $ROOTFS_IMAGE"
    "$DOCKER" import --change 'CMD ["python3"]' "$TARBALL" "$ROOTFS_IMAGE" >/dev/null
fi

context=$(mktemp -d)
trap 'rm -rf "$context"; [ -z "${tmp_root:-}" ] || $SUDO rm -rf "$tmp_root"' EXIT
cp "$CA" "$context/ca-certificates.crt"
cat >"$context/Dockerfile" <<EOF
FROM $ROOTFS_IMAGE
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
# uv reads its roots from SSL_CERT_FILE (else it uses its own copy of Mozilla's); pip from PIP_CERT.
ENV LANG=C.UTF-8 \\
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \\
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt
LABEL $LABEL=$CA_SHA
CMD ["python3"]
EOF
DOCKER_BUILDKIT=1 "$DOCKER" build --network host -q -t "$NAME" "$context" >/dev/null
echo "base-image: $NAME ($("$DOCKER" image inspect -f '{{ .Size }}' "$NAME" | awk '{printf "%.0f MB", $1 / 1e6}'))"
