# syntax=docker/dockerfile:1.7
# Triton Inference Server with the wine-quality ensemble (preprocess -> ONNX -> postprocess) baked
# in. The repository is written by `winequality export triton --variant onnxruntime` from a model
# bundle in the build context (by default models/serving, what `winequality registry pull` writes):
#   uv run winequality registry pull --run-id "$RUN_ID" --dest models/serving
#   docker build -f deploy/docker/triton.Dockerfile -t wine-quality-triton .
# In the cluster the same image serves a repository that an initContainer writes to /mnt/models,
# so the model can change without a new image.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG TRITON_IMAGE=nvcr.io/nvidia/tritonserver:24.08-py3

FROM ghcr.io/astral-sh/uv:0.13.9 AS uv

FROM ${PYTHON_IMAGE} AS export
COPY --from=uv /uv /bin/uv
ENV UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never
WORKDIR /src
COPY pyproject.toml uv.lock README.md ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv export --frozen --no-dev --no-emit-project --prune mlflow --prune dvc -o requirements.txt \
    && uv venv /opt/venv \
    && uv pip sync --python /opt/venv/bin/python --require-hashes requirements.txt
COPY src ./src
RUN --mount=type=cache,target=/root/.cache/uv \
    uv pip install --python /opt/venv/bin/python --no-deps .
ARG BUNDLE=models/serving
COPY ${BUNDLE} /bundle
RUN /opt/venv/bin/winequality export triton --bundle /bundle --out /models --variant onnxruntime

FROM ${TRITON_IMAGE} AS runtime
# The Python-backend steps import only numpy (and the copied schema/features modules); the image
# ships numpy for its Python backend, checked here so a base-image change fails the build.
RUN python3 -c "import numpy"
# The image's non-root account triton-server is uid/gid 1000 (Ubuntu 22.04 base, first user).
COPY --from=export --chown=1000:1000 /models /models
USER 1000:1000
# Seldon Core's default ports for a custom container: http 9000, grpc 9500, metrics 6000.
EXPOSE 9000 9500 6000
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9000/v2/health/ready', timeout=2)"]
ENTRYPOINT ["tritonserver"]
CMD ["--model-repository=/models", "--http-port=9000", "--grpc-port=9500", "--metrics-port=6000", "--strict-readiness=true", "--exit-on-error=true"]
