# winequality: `make run` trains and serves on embedded defaults; `make test` runs every test.
# `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
UV := $(PYTHON) -m uv
RUN := $(UV) run --frozen
APT_PACKAGES := prometheus prometheus-alertmanager wrk chromium postgresql docker.io debootstrap debian-archive-keyring docker-compose
# `make run` needs only the monitoring loop's two; wrk (benchmarks), chromium (page tests),
# postgresql (the shared feedback store and MLflow backend tests) and the Docker engine, debootstrap
# and docker-compose (the container tests, `make base-image`, `make images`) are for `make test`.
# A Docker engine or compose installed otherwise (docker-ce on CI runners) stands in for Debian's.
RUN_APT_PACKAGES := prometheus prometheus-alertmanager
PACKAGES ?= $(APT_PACKAGES)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Both cores by default; `make test PYTEST_WORKERS=0` runs the suite in one process. loadscope
# keeps a module on one worker, so its module fixtures (a Triton server, a DVC project) run once;
# without its reordering (by test count) modules go out in path order: the few slow e2e and
# integration modules first, the many quick unit tests fill the gaps at the end.
PYTEST_WORKERS ?= auto
PYTEST_XDIST := -n $(PYTEST_WORKERS) --dist loadscope --no-loadscope-reorder

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-14s %s\n", $$1, $$2}'

.PHONY: install
install: ## install uv if missing, then the locked environment into .venv
	@$(UV) --version >/dev/null 2>&1 || PIP_ROOT_USER_ACTION=ignore $(PYTHON) -m pip install --quiet --disable-pip-version-check uv
	@# Bytecode compiled once here: where PYTHONDONTWRITEBYTECODE is set, every command would
	@# otherwise recompile MLflow and scikit-learn at start (seconds per `register` or `pull`).
	$(UV) sync --frozen --compile-bytecode

.PHONY: system-deps
system-deps: ## Debian packages for the monitoring loop and the tests (Prometheus, Alertmanager, wrk, Chromium, PostgreSQL, Docker)
	@missing=""; for p in $(PACKAGES); do \
	  case $$p in docker.io) command -v dockerd >/dev/null && continue;; \
	    docker-compose) command -v docker-compose >/dev/null && continue;; esac; \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if command -v apt-get >/dev/null; then \
	    echo "installing:$$missing"; $(SUDO) apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	  else echo "please install:$$missing (Debian package names)"; exit 1; fi; \
	fi

.PHONY: pipeline
pipeline: install ## run the DVC pipeline: data -> validate -> prepare -> train -> evaluate -> ONNX -> register -> promote
	$(RUN) dvc repro
	$(RUN) winequality registry pull --alias champion --dest models/serving
	$(RUN) winequality summary

.PHONY: run
run: pipeline ## the main job: the pipeline on embedded defaults, then the local stack (Ctrl-C stops it)
	@$(MAKE) --no-print-directory system-deps PACKAGES="$(RUN_APT_PACKAGES)" || echo "Prometheus/Alertmanager could not be installed here: \`winequality up\` says what it needs."
	$(RUN) winequality up

.PHONY: lint
lint: install ## ruff and mypy (strict)
	$(RUN) ruff check src tests benchmarks
	$(RUN) ruff format --check src tests benchmarks
	$(RUN) mypy

.PHONY: test
test: install system-deps ## install what the tests need and run them all (unit, integration, e2e)
	$(RUN) ruff check src tests benchmarks
	$(RUN) mypy
	$(RUN) pytest $(PYTEST_XDIST) --durations=10

.PHONY: bench
bench: install system-deps ## run the benchmarks (figures side by side with their baselines)
	$(RUN) python benchmarks/pipeline.py

# Debian's client: it builds with BuildKit (cache mounts) without a frontend image to pull.
DOCKER ?= /usr/bin/docker
BASE_IMAGE ?= winequality-base:bookworm

.PHONY: base-image
base-image: ## the offline base image: Debian bookworm + python3 + this machine's CA bundle (cached)
	DOCKER=$(DOCKER) deploy/docker/base-image.sh $(BASE_IMAGE)

# `make images PYTHON_IMAGE=python:3.11-slim-bookworm` builds on the official base (a registry).
PYTHON_IMAGE ?= $(BASE_IMAGE)

.PHONY: images
images: ## build every image (offline, on the base image) and print their sizes
	@[ "$(PYTHON_IMAGE)" != "$(BASE_IMAGE)" ] || $(MAKE) --no-print-directory base-image
	DOCKER=$(DOCKER) PYTHON_IMAGE=$(PYTHON_IMAGE) deploy/docker/build-images.sh

.PHONY: clean
clean: ## remove generated data, models, tracking store, the local and compose stacks' run folders (with their feedback databases) and caches (not the DVC remote)
	rm -rf data models metrics reports mlruns.db mlartifacts .stack .compose triton-repo .pytest_cache .mypy_cache .ruff_cache
