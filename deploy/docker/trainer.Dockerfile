# The training side: the DVC pipeline (`dvc repro`), `winequality registry pull` (the model
# initContainer of the cluster), `winequality export triton`, and the retraining webhook + job.
# Build from the repository root, with a registry:
#   docker build -f deploy/docker/trainer.Dockerfile -t wine-quality-trainer .
# or offline, on the base that `make base-image` makes from Debian's packages:
#   DOCKER_BUILDKIT=1 docker build --network host --build-arg PYTHON_IMAGE=winequality-base:bookworm \
#     -f deploy/docker/trainer.Dockerfile -t wine-quality-trainer .
# No `# syntax=` line: the engine's built-in frontend has cache mounts and needs no registry.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# uv from PyPI, not from its image: PyPI is the one registry both build paths reach.
ARG UV_VERSION=0.13.9
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/venv
RUN --mount=type=cache,target=/root/.cache/pip \
    python3 -m venv /opt/uv \
    && /opt/uv/bin/pip install --disable-pip-version-check "uv==${UV_VERSION}"
WORKDIR /src
# Dependencies first, from the lock alone: this layer survives source and README changes.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    /opt/uv/bin/uv sync --frozen --no-dev --no-install-project --python python3
COPY README.md ./
COPY src ./src
RUN --mount=type=cache,target=/root/.cache/uv \
    /opt/uv/bin/uv sync --frozen --no-dev --no-editable --python python3 \
    && /opt/venv/bin/winequality registry pull --help >/dev/null

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 wine \
    && useradd --system --uid 10001 --gid wine --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin wine \
    && mkdir -p /app /mnt/models \
    && chown wine:wine /app /mnt/models
COPY --from=build /opt/venv /opt/venv
# The pipeline definition and its parameters; the data and models are produced at run time (or
# pulled from the DVC remote), never baked into the image.
COPY --chown=wine:wine dvc.yaml params.yaml .dvcignore /app/
COPY --chown=wine:wine .dvc/config /app/.dvc/config
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/app \
    WINEQ_PROJECT_DIR=/app \
    WINEQ_PARAMS_FILE=/app/params.yaml \
    WINEQ_MODEL_DIR=/mnt/models
WORKDIR /app
USER 10001:10001
# The image has no git checkout: DVC runs without an SCM (the run's git commit tag comes from CI).
RUN dvc config --local core.no_scm true
ENTRYPOINT ["winequality"]
CMD ["--help"]
