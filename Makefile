# vessel-lightning: set-up, the demo, tests and checks. `make help` lists the targets.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
export VESSEL_DATA_DIR ?= $(CURDIR)/data
export NEXT_TELEMETRY_DISABLED = 1
export NO_MKDOCS_2_WARNING = 1

.PHONY: help install ui api-types chromium demo test test-python test-fast ui-test lint typecheck pre-commit format clean \
	docker-bases docker docker-test docker-backup docker-restore
.PHONY: docs screenshots

help:
	@echo "make demo       set everything up, prepare CHASE_DB1, train B0 (~15 min on 2 CPU cores), register and"
	@echo "                promote it, then serve API + UI on http://$(HOST):$(PORT)  (data: VESSEL_DATA_DIR)"
	@echo "make test       the whole test suite: Python (pytest) and UI (vitest, Playwright e2e in Chromium)"
	@echo "make install    create $(VENV) and install the package with its serving and dev extras"
	@echo "make ui         build the browser UI into ui/out"
	@echo "make api-types  regenerate ui/src/api/{openapi.json,schema.d.ts} from the API's OpenAPI schema"
	@echo "make test-fast  Python tests without those marked slow"
	@echo "make lint       the pre-commit hooks on every file (ruff, ruff format, lint-imports, mypy, the UI's API"
	@echo "                types, codespell), then hadolint and the compose file"
	@echo "make typecheck  mypy over vessel_lightning/ and app/ (one of the hooks)"
	@echo "make pre-commit install the hooks into git, so each commit runs them on its files"
	@echo "make docker     build the images (app CPU and gpu target, train, mlflow); stand-in bases where Docker"
	@echo "                Hub cannot be reached (make docker-bases)"
	@echo "make docker-test  the compose stack end to end: train in the image, serve, break it (~15 min)"
	@echo "make docs       build the documentation site (docs/, mkdocs.yml) into site/, strict"
	@echo "make screenshots  the UI screenshots in docs/images/ from the served champion (after make demo)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch + torchvision first, pinned: PyPI's CUDA wheels (they run on CPU too) that segmentation-models-pytorch's
# timm dependency imports cleanly beside; everything else is pinned by constraints.txt.
$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install --quiet -c constraints.txt -e ".[train,serve,dev,postgres,ray]"
	touch $@

install: $(VENV)/.installed

ui/node_modules/.installed: ui/package-lock.json
	cd ui && npm ci --no-audit --no-fund
	touch $@

ui/out/index.html: ui/node_modules/.installed $(shell find ui/app ui/src ui/public -type f 2>/dev/null) ui/next.config.mjs
	cd ui && npm run build

ui: ui/out/index.html

# The UI's API types come from the server's OpenAPI schema (tests fail while either committed file is stale).
api-types: install ui/node_modules/.installed
	$(BIN)/python -m app.openapi_schema --ui
	cd ui && npm run api:types

# The browser for the end-to-end test: Debian's Chromium (nothing downloads a browser).
chromium:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else echo "the UI end-to-end test needs Debian's chromium: sudo apt-get install -y chromium" >&2; exit 1; fi; }

demo: install ui
	@test -d "$(VESSEL_DATA_DIR)/CHASE_DB1/images" || $(BIN)/vessel-download chase_db1 --data-dir "$(VESSEL_DATA_DIR)"
	$(BIN)/vessel-train experiment=demo_cpu        # prepares CHASE_DB1 first (tiles mode), then trains
	$(BIN)/vessel-eval data=chase_db1 split=test output_dir=runs/demo-eval
	@echo
	@echo "Browse the runs:  MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/runs/mlflow/mlflow.db --host 127.0.0.1 --port 5000"
	@echo "Serving API + UI: http://$(HOST):$(PORT)/"
	VESSEL_CALIBRATION_DIR="$${VESSEL_CALIBRATION_DIR:-$(VESSEL_DATA_DIR)/CHASE_DB1/images}" \
	  $(BIN)/vessel-serve --host $(HOST) --port $(PORT)   # photos let VESSEL_BACKEND=auto prove bf16/int8 masks

test-python: install
	$(BIN)/pytest --durations=15

ui-test: install ui chromium
	cd ui && npm test
	cd ui && VESSEL_PYTHON=$(CURDIR)/$(BIN)/python npm run test:e2e

test: test-python ui-test

test-fast: install
	$(BIN)/pytest -m "not slow" --durations=15

# The hooks call the pinned tools from the venv (.pre-commit-config.yaml): its bin/ goes first on PATH.
HOOKS = PATH="$(abspath $(BIN)):$$PATH" $(BIN)/pre-commit run --all-files --show-diff-on-failure

lint: install
	$(HOOKS)
	$(BIN)/hadolint docker/*.Dockerfile docker/bases/*.Dockerfile
	@if command -v docker-compose >/dev/null || docker compose version >/dev/null 2>&1; then \
	  for f in "" "-f tests/deploy/compose.test.yaml"; do \
	    $(COMPOSE) -f docker/compose.yaml $$f --profile train --profile train-cpu --profile gpu config -q || exit 1; \
	  done; echo "docker/compose.yaml (and the test's override): valid"; \
	 else echo "docker compose not installed: docker/compose.yaml not validated (apt-get install docker-compose)"; fi

typecheck: install
	$(HOOKS) mypy

pre-commit: install
	$(BIN)/pre-commit install
	@echo "the hooks call the venv's tools: commit with it active (source $(VENV)/bin/activate)"

# --- Docker: images, the stack's end-to-end test ------------------------------------------------------------
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1)
GIT_COMMIT := $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
IMAGE_TAG ?= latest
# The classic builder (Debian's engine has no buildx); host networking reaches the package registries wherever
# the host does (a proxy's CA included: docker/bases.sh).
DOCKER_BUILD = DOCKER_BUILDKIT=0 docker build --force-rm --network host --build-arg VERSION=$(VERSION) \
  --build-arg GIT_COMMIT=$(GIT_COMMIT)
COMPOSE = $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)

docker-bases:
	docker/bases.sh

docker: docker-bases
	$(DOCKER_BUILD) -f docker/mlflow.Dockerfile -t vessel-lightning-mlflow:$(IMAGE_TAG) .
	$(DOCKER_BUILD) -f docker/app.Dockerfile -t vessel-lightning-app:$(IMAGE_TAG) .
	$(DOCKER_BUILD) -f docker/app.Dockerfile --target gpu -t vessel-lightning-app-gpu:$(IMAGE_TAG) .
	$(DOCKER_BUILD) -f docker/train.Dockerfile -t vessel-lightning-train:$(IMAGE_TAG) .
	@docker image ls --format '{{.Repository}}:{{.Tag}}  {{.Size}}' 'vessel-lightning-*'

# Builds (make docker), then brings the stack up on loopback under its own project name and ports, trains in the
# training image, serves, breaks and restores it (tests/deploy/test_stack.py), and tears it all down but the images.
# The stack test drives the container's UI in Chromium too (ui/e2e/container.spec.ts): the UI's test tools first.
docker-test: docker install ui/node_modules/.installed chromium
	VESSEL_DOCKER_TEST=1 $(BIN)/pytest tests/deploy -m docker -p no:cacheprovider --durations=0

# Backup and restore of the tracking data (PostgreSQL dump + artifacts volume): docker/backup.sh, docker/restore.sh.
BACKUP_DIR ?= backups/$(shell date +%Y%m%d-%H%M%S)
docker-backup:
	docker/backup.sh "$(BACKUP_DIR)"

docker-restore:
	@test -n "$(FROM)" || { echo "make docker-restore FROM=backups/<stamp>" >&2; exit 1; }
	docker/restore.sh "$(FROM)"

# The documentation site: reference pages are generated from the code at build time (docs/hooks.py); --strict makes a
# broken link, a missing page or a page left out of the navigation an error.
$(VENV)/.docs-installed: pyproject.toml constraints.txt | $(VENV)/.installed
	$(BIN)/pip install --quiet -c constraints.txt -e ".[docs]"
	touch $@

docs: $(VENV)/.docs-installed
	$(BIN)/mkdocs build --strict

# Screenshots of the UI for docs/images/, in Debian's Chromium against the served champion (a trained model, not noise).
screenshots: install ui chromium
	$(BIN)/python experiments/screenshots.py

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache ui/node_modules ui/out ui/.next site
