# syntax=docker/dockerfile:1.7
# The drift detector: `winequality drift serve` (CloudEvents on POST /, Seldon drift metrics on
# /metrics). Build from the repository root:
#   docker build -f deploy/docker/detector.Dockerfile -t wine-quality-detector .
# Like the app it imports neither MLflow nor DVC, so both are pruned from the locked tree.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ghcr.io/astral-sh/uv:0.13.9 AS uv

FROM ${PYTHON_IMAGE} AS build
COPY --from=uv /uv /bin/uv
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never
WORKDIR /src
COPY pyproject.toml uv.lock README.md ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv export --frozen --no-dev --no-emit-project --prune mlflow --prune dvc -o requirements.txt \
    && uv venv /opt/venv \
    && uv pip sync --python /opt/venv/bin/python --require-hashes requirements.txt
COPY src ./src
COPY params.yaml /opt/winequality/params.yaml
RUN --mount=type=cache,target=/root/.cache/uv \
    uv pip install --python /opt/venv/bin/python --no-deps . \
    && /opt/venv/bin/winequality drift serve --help >/dev/null

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 wine \
    && useradd --system --uid 10001 --gid wine --home-dir /nonexistent --no-create-home \
       --shell /usr/sbin/nologin wine \
    && mkdir -p /mnt/models
COPY --from=build /opt/venv /opt/venv
# The drift.* block (window size, p-value threshold, correction) is read from params.yaml.
COPY --from=build /opt/winequality/params.yaml /opt/winequality/params.yaml
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    WINEQ_DRIFT_MODEL_DIR=/mnt/models \
    WINEQ_DRIFT_PARAMS_FILE=/opt/winequality/params.yaml
WORKDIR /opt/winequality
USER 10001:10001
EXPOSE 8010
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8010/health/ready', timeout=2)"]
ENTRYPOINT ["winequality", "drift", "serve", "--host", "0.0.0.0", "--port", "8010"]
