#!/usr/bin/env bash
# `make images`: every image of deploy/docker built on PYTHON_IMAGE (default: the offline base of
# `make base-image`), then their sizes. Tags are IMAGE_PREFIX-NAME:IMAGE_TAG (wine-quality-app:latest
# ...). The Triton image needs a model bundle in the context (BUNDLE, default models/serving, what
# `make pipeline` writes): without one it is skipped. With the official bases (a registry), set
# PYTHON_IMAGE=python:3.11-slim-bookworm and TRITON=official to build the production Triton image.
# Prometheus, Alertmanager and PostgreSQL (the compose stack's) come from Debian's packages on
# PYTHON_IMAGE; MONITORING=official builds them on the official prom/ and postgres images instead.
set -euo pipefail

DOCKER=${DOCKER:-/usr/bin/docker}
PYTHON_IMAGE=${PYTHON_IMAGE:-winequality-base:bookworm}
PREFIX=${IMAGE_PREFIX:-wine-quality}
TAG=${IMAGE_TAG:-latest}
BUNDLE=${BUNDLE:-models/serving}
TRITON=${TRITON:-local}
MONITORING=${MONITORING:-debian}
cd "$(dirname "$0")/../.."

built=()
build() {
    local name=$1 start
    shift
    start=$(date +%s)
    # Debian's client builds with BuildKit (cache mounts) when asked; no bridge network here.
    DOCKER_BUILDKIT=1 "$DOCKER" build -q --network host --build-arg PYTHON_IMAGE="$PYTHON_IMAGE" \
        -t "$PREFIX-$name:$TAG" "$@" . >/dev/null
    echo "images: $PREFIX-$name:$TAG built in $(($(date +%s) - start)) s"
    built+=("$PREFIX-$name:$TAG")
}

build app -f deploy/docker/app.Dockerfile
build detector -f deploy/docker/detector.Dockerfile
build trainer -f deploy/docker/trainer.Dockerfile
for name in prometheus alertmanager postgres; do
    build "$name" -f "deploy/docker/$name.Dockerfile" --target "$MONITORING"
done
if [ -f "$BUNDLE/model.onnx" ]; then
    if [ "$TRITON" = official ]; then
        build triton -f deploy/docker/triton.Dockerfile --build-arg BUNDLE="$BUNDLE"
    else
        build triton-local -f deploy/docker/triton.Dockerfile --target local --build-arg BUNDLE="$BUNDLE"
    fi
else
    echo "images: Triton skipped: no model bundle at $BUNDLE (make pipeline writes one)"
fi

echo "images: sizes on $PYTHON_IMAGE"
for image in "${built[@]}"; do
    "$DOCKER" image inspect -f '{{ .Size }}' "$image" | awk -v i="$image" '{ printf "  %-40s %5.0f MB\n", i, $1 / 1e6 }'
done
