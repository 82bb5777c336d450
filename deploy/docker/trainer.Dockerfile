# syntax=docker/dockerfile:1.7
# The training side: the DVC pipeline (`dvc repro`), `winequality registry pull` (the model
# initContainer of the cluster), `winequality export triton`, and the retraining webhook + job.
# Build from the repository root:
#   docker build -f deploy/docker/trainer.Dockerfile -t wine-quality-trainer .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ghcr.io/astral-sh/uv:0.13.9 AS uv

FROM ${PYTHON_IMAGE} AS build
COPY --from=uv /uv /bin/uv
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/venv
WORKDIR /src
COPY pyproject.toml uv.lock README.md ./
# Dependencies first: this layer survives source-only changes.
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-project
COPY src ./src
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable \
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
