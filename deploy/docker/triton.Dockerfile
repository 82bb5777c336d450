# Triton Inference Server with the wine-quality ensemble (preprocess -> ONNX -> postprocess) baked
# in. The repository is written by `winequality export triton` from a model bundle in the build
# context (by default models/serving, what `winequality registry pull` writes):
#   uv run winequality registry pull --run-id "$RUN_ID" --dest models/serving
#   docker build -f deploy/docker/triton.Dockerfile -t wine-quality-triton .
# In the cluster the same image serves a repository that an initContainer writes to /mnt/models,
# so the model can change without a new image.
# The `local` target runs the same ensemble without NVIDIA's registry: the Triton server bundled
# in the nvidia-pytriton wheel (PyPI) on the Python base, e.g. the one `make base-image` makes:
#   DOCKER_BUILDKIT=1 docker build --network host --target local \
#     --build-arg PYTHON_IMAGE=winequality-base:bookworm -f deploy/docker/triton.Dockerfile \
#     -t wine-quality-triton-local .
# No `# syntax=` line: the engine's built-in frontend has cache mounts and needs no registry.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG TRITON_IMAGE=nvcr.io/nvidia/tritonserver:24.08-py3

FROM ${PYTHON_IMAGE} AS export
# uv from PyPI, not from its image: PyPI is the one registry both build paths reach.
ARG UV_VERSION=0.13.9
ENV UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never
RUN --mount=type=cache,target=/root/.cache/pip \
    python3 -m venv /opt/uv \
    && /opt/uv/bin/pip install --disable-pip-version-check "uv==${UV_VERSION}"
WORKDIR /src
# The lock alone decides the dependency layer (README edits do not rebuild it).
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    /opt/uv/bin/uv export --frozen --no-dev --no-emit-project --prune mlflow --prune dvc \
       -o requirements.txt \
    && /opt/uv/bin/uv venv --python python3 /opt/venv \
    && /opt/uv/bin/uv pip sync --python /opt/venv/bin/python --require-hashes requirements.txt
COPY README.md ./
COPY src ./src
RUN --mount=type=cache,target=/root/.cache/uv \
    /opt/uv/bin/uv pip install --python /opt/venv/bin/python --no-deps .
ARG BUNDLE=models/serving
COPY ${BUNDLE} /bundle
RUN /opt/venv/bin/winequality export triton --bundle /bundle --out /models --variant onnxruntime

FROM export AS local-export
# The wheel's server has no onnxruntime backend: the python variant runs ONNX Runtime in the
# Python backend, in an environment of its own (numpy<2, see winequality.bundled_triton), which
# the same code that serves `winequality serve --backend triton` fetches and builds here.
ENV PATH=/opt/uv/bin:$PATH WINEQ_CACHE_DIR=/opt/triton
RUN --mount=type=cache,target=/root/.cache/uv --mount=type=cache,target=/root/.cache/pip \
    /opt/venv/bin/python -m winequality.bundled_triton \
    && rm -rf /opt/triton/wheels \
    && /opt/venv/bin/winequality export triton --bundle /bundle --out /models-python --variant python

FROM ${PYTHON_IMAGE} AS local
# The Python backend's stub embeds the interpreter and needs its shared libpython, which Debian
# ships apart from python3 (the official Python image has it).
# hadolint ignore=DL3008
RUN python3 -c "import os, sysconfig as s; os.stat(os.path.join(s.get_config_var('LIBDIR'), s.get_config_var('INSTSONAME')))" 2>/dev/null \
    || { apt-get update -qq \
         && apt-get install -y -qq --no-install-recommends "libpython$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')" \
         && rm -rf /var/lib/apt/lists/*; } \
    && groupadd --system --gid 10001 triton \
    && useradd --system --uid 10001 --gid triton --home-dir /nonexistent --no-create-home \
       --shell /usr/sbin/nologin triton
COPY --from=local-export /opt/triton /opt/triton
COPY --from=local-export /models-python /models
ENV TRITON_HOME=/opt/triton/tritonserver/pytriton-0.5.14
# The stub finds its site-packages through the python3 first on PATH, and must load this
# interpreter's libpython (LIBDIR: /usr/local/lib in the official image, the multiarch folder in
# Debian's) before any copy in the wheel's libraries.
ENV PATH=${TRITON_HOME}/python-env-py3.11/bin:$PATH \
    LD_LIBRARY_PATH=/usr/local/lib:/usr/lib/x86_64-linux-gnu:${TRITON_HOME}/dist/nvidia_pytriton.libs
USER 10001:10001
EXPOSE 9000 9500 6000
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9000/v2/health/ready', timeout=2)"]
ENTRYPOINT ["/opt/triton/tritonserver/pytriton-0.5.14/dist/pytriton/tritonserver/bin/tritonserver", "--backend-directory=/opt/triton/tritonserver/pytriton-0.5.14/backends-py3.11", "--cache-directory=/opt/triton/tritonserver/pytriton-0.5.14/dist/pytriton/tritonserver/caches", "--pinned-memory-pool-byte-size=0", "--allow-sagemaker=false", "--allow-vertex-ai=false"]
CMD ["--model-repository=/models", "--http-port=9000", "--grpc-port=9500", "--metrics-port=6000", "--strict-readiness=true", "--exit-on-error=true"]

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
