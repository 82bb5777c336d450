# The prediction API (FastAPI): `python -m winequality.serving`, in process (onnx) or as a V2 proxy
# (WINEQ_BACKEND=remote). Build from the repository root, with a registry:
#   docker build -f deploy/docker/app.Dockerfile -t wine-quality-app .
# or offline, on the base that `make base-image` makes from Debian's packages:
#   DOCKER_BUILDKIT=1 docker build --network host --build-arg PYTHON_IMAGE=winequality-base:bookworm \
#     -f deploy/docker/app.Dockerfile -t wine-quality-app .
# Only the `serving` dependency group is installed (what the serving path imports, pinned by
# uv.lock): no MLflow, DVC, scikit-learn, pandas, pyarrow or scipy.
# No `# syntax=` line: the engine's built-in frontend has cache mounts and needs no registry.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# uv from PyPI, not from its image: PyPI is the one registry both build paths reach.
ARG UV_VERSION=0.13.9
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never
RUN --mount=type=cache,target=/root/.cache/pip \
    python3 -m venv /opt/uv \
    && /opt/uv/bin/pip install --disable-pip-version-check "uv==${UV_VERSION}"
WORKDIR /src
# The lock alone decides the dependency layer (README edits do not rebuild it).
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    /opt/uv/bin/uv export --frozen --no-dev --only-group serving --no-emit-project \
       -o requirements.txt \
    && /opt/uv/bin/uv venv --python python3 /opt/venv \
    && /opt/uv/bin/uv pip sync --python /opt/venv/bin/python --require-hashes requirements.txt
COPY README.md ./
COPY src ./src
RUN --mount=type=cache,target=/root/.cache/uv \
    /opt/uv/bin/uv pip install --python /opt/venv/bin/python --no-deps . \
    && /opt/venv/bin/python -m winequality.serving --help >/dev/null

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 wine \
    && useradd --system --uid 10001 --gid wine --home-dir /nonexistent --no-create-home \
       --shell /usr/sbin/nologin wine \
    && mkdir -p /mnt/models /var/lib/winequality \
    && chown wine:wine /var/lib/winequality
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    WINEQ_HOST=0.0.0.0 \
    WINEQ_PORT=8000 \
    WINEQ_MODEL_DIR=/mnt/models \
    WINEQ_FEEDBACK_DB=/var/lib/winequality/feedback.sqlite
WORKDIR /var/lib/winequality
USER 10001:10001
EXPOSE 8000
# Readiness, not liveness: a container without a loaded model must not count as healthy.
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('WINEQ_PORT', '8000') + '/health/ready', timeout=2)"]
ENTRYPOINT ["python", "-m", "winequality.serving"]
