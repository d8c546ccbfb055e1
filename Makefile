# NW-Data Workbench. `make` alone lists the targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8866
# JupyterLab without the internet: no update check, no news feed, no extension manager calling PyPI from the page
LAB_OFFLINE := --LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate --LabApp.news_url=None --LabApp.extension_manager=readonly

## help: list the targets
help:
	@grep -E '^## ' $(MAKEFILE_LIST) | sed 's/^## /  /'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[extensions,notebooks,s3,delta,databricks,transform,prefect,metrics,dev]"
	@touch $(STAMP)

## install: create .venv and install nwlib with everything the tests need
install: $(STAMP)

## demo: sample lake → embedded PostgreSQL → sync → change rows → sync → verify
demo: $(STAMP)
	$(BIN)/nw bootstrap --scale 1
	$(BIN)/nw sync --dry-run
	$(BIN)/nw sync
	$(BIN)/nw bootstrap --mutate --fraction 0.02
	$(BIN)/nw sync
	$(BIN)/nw verify
	$(BIN)/nw status

## test: the whole test suite against real PostgreSQL (embedded unless NW_TEST_DATABASE_URL)
test: $(STAMP)
	$(BIN)/python -m pytest -q

## test-fast: the suite without the slow fault-injection tests
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

## bench: the performance benchmark (writes data/runs/bench.json)
bench: $(STAMP)
	$(BIN)/pip install -q -e ".[bench]"
	$(BIN)/python benchmarks/bench.py

## notebooks: run bootstrap.ipynb then sync.ipynb with papermill into data/runs/ (BOOTSTRAP_ARGS="-p scale 2 -p mutate_fraction 0.01" SYNC_ARGS="-p tables pedidos,clientes")
notebooks: $(STAMP)
	@mkdir -p data/runs
	@$(BIN)/python -m ipykernel install --sys-prefix >/dev/null
	$(BIN)/papermill notebooks/bootstrap.ipynb data/runs/bootstrap.ipynb $(BOOTSTRAP_ARGS)
	$(BIN)/papermill notebooks/sync.ipynb data/runs/sync.ipynb $(SYNC_ARGS)

## lab: open JupyterLab on the notebooks (http://127.0.0.1:8888; the workbench's home: explore, sync, bootstrap, dashboard)
lab: $(STAMP)
	@$(BIN)/python -m ipykernel install --sys-prefix >/dev/null
	$(BIN)/jupyter lab notebooks --ServerApp.ip=127.0.0.1 $(LAB_OFFLINE) $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

## dashboard: serve the Voila dashboard (notebooks/dashboard.ipynb) on http://127.0.0.1:8866 (PORT=... to change); offline, kernels culled (nwlib/dashboard/serve.py)
dashboard: $(STAMP)
	$(BIN)/python -m nwlib.dashboard.serve notebooks/dashboard.ipynb --port=$(PORT)

## lint: ruff over the library and tests
lint: $(STAMP)
	$(BIN)/ruff check nwlib tests

## clean: remove the venv and local data (the lake, the embedded PostgreSQL, run outputs, nw's local state)
clean:
	rm -rf $(VENV) data/pgdata data/*.duckdb data/*.duckdb.wal data/runs data/.nw

.PHONY: help install demo test test-fast bench lint clean notebooks lab dashboard
