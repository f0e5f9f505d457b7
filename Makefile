# vessel-lightning: set-up, tests and checks. `make help` lists the targets.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: help install test test-fast lint format clean

help:
	@echo "make install    create $(VENV) and install the package with its serving and dev extras"
	@echo "make test       run the whole test suite (installs first); real data via VESSEL_DATA_DIR"
	@echo "make test-fast  the suite without tests marked slow"
	@echo "make lint       ruff lint and format check"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch + torchvision first, pinned: PyPI's CUDA wheels (CPU-capable) that segmentation-models-pytorch's
# timm dependency imports cleanly beside; everything else is pinned by constraints.txt.
$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install --quiet -c constraints.txt -e ".[serve,dev]"
	touch $@

install: $(VENV)/.installed

test: install
	$(BIN)/pytest

test-fast: install
	$(BIN)/pytest -m "not slow"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
