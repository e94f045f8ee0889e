# cloudsnap — developer entry points. `make test` is what CI runs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PKGS := operator/cloudsnap operator/evs_simulator

.PHONY: all venv lint test unit tools crds sandbox clean

all: test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check operator tests bench hack
	$(BIN)/ruff format --check operator tests bench hack
	$(BIN)/mypy $(PKGS)

# Pinned kube-apiserver, etcd and helm built from Go modules into a cache outside the checkout.
tools: $(STAMP)
	$(BIN)/python -m hack.tools.install

crds: $(STAMP)
	$(BIN)/cloudsnap-operator crds --output crds

# The whole suite: lint, tools, then every test (unit, simulator, SDK interop, end-to-end).
test: lint tools
	$(BIN)/pytest

# Only the tests that need no control plane.
unit: $(STAMP)
	$(BIN)/pytest -m 'not e2e'

sandbox: tools
	$(BIN)/python -m hack.sandbox

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
