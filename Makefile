# cloudsnap — developer entry points. `make test` is what CI runs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PKGS := operator/cloudsnap operator/evs_simulator

.PHONY: all venv lint test unit tools image-deps crds chart-crds manifests lock lock-upgrade image sandbox bench bench-restore ha-trials chaos clean

all: test

# The venv is exactly requirements-dev.lock (hash-checked, nothing resolved), then cloudsnap itself;
# a changed lock rebuilds it from scratch, so nothing a registry serves today changes what runs.
$(STAMP): requirements-dev.lock pyproject.toml
	$(PYTHON) -m venv --clear $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes --no-deps \
		--requirement requirements-dev.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation --editable .
	$(BIN)/pip check
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check operator tests bench hack deploy
	$(BIN)/ruff format --check operator tests bench hack deploy
	$(BIN)/mypy $(PKGS) hack

# Pinned kube-apiserver, kube-controller-manager, etcd and helm built from Go modules into a cache outside the checkout.
tools: $(STAMP)
	$(BIN)/python -m hack.tools.install

crds: $(STAMP)
	$(BIN)/cloudsnap-operator crds --output crds

# The chart ships crds/ byte for byte (tests/deploy fails when they differ); run after `make crds`.
chart-crds:
	rm -f deploy/helm/cloudsnap-operator/crds/*.yaml
	cp crds/*.yaml deploy/helm/cloudsnap-operator/crds/

# Plain kustomize-ready manifests rendered from the chart (tests/deploy fails when stale).
manifests: chart-crds tools
	$(BIN)/python deploy/render_manifests.py "$$($(BIN)/python -c 'from hack.tools.install import tools_bin; print(tools_bin())')/helm"

# Re-resolve the locks after editing pyproject's dependencies, keeping every pin that still fits
# (hack/lock.py); `lock-upgrade` moves every pin to the newest release pyproject allows.
lock: $(STAMP)
	$(BIN)/python -m hack.lock

lock-upgrade: $(STAMP)
	$(BIN)/python -m hack.lock --upgrade

# The whole suite: lint, tools, then every test (unit, simulator, SDK interop, end-to-end).
test: lint tools image-deps
	$(BIN)/pytest

# Only the tests that need no control plane.
unit: $(STAMP)
	$(BIN)/pytest -m 'not e2e'

# The operator image as an OCI archive and its SPDX SBOM in dist/, built without a container engine
# from Debian's packages and requirements.lock (hack/image.py; needs root, mmdebstrap and umoci).
# Reproducible: the same inputs and Debian packages give the same bytes. 1.5-3 minutes cold.
# mmdebstrap and umoci are Debian packages: installed when missing on a root Debian machine (CI's),
# else the image's end-to-end test says what is missing and is skipped.
image-deps:
	@if ! command -v mmdebstrap >/dev/null || ! command -v umoci >/dev/null; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap umoci) \
				|| echo "image-deps: could not install mmdebstrap and umoci"; \
		else echo "image-deps: mmdebstrap and umoci missing (apt-get install mmdebstrap umoci)"; fi; \
	fi

image: $(STAMP) image-deps
	$(BIN)/python -m hack.image --output dist

sandbox: tools
	$(BIN)/python -m hack.sandbox

# Scale benchmark, minutes long, not part of `make test`; e.g. BENCH_ARGS='--count 100 1000'.
bench: tools
	$(BIN)/python -m bench.scale $(BENCH_ARGS)

# Leader election with two replicas (SIGKILL, SIGTERM, SIGSTOP the leader, delete the Lease),
# default Lease timings, about 20 minutes, not part of `make test`; e.g.
# HA_ARGS='--kill-trials 3 --timing 4 3 1'. Only the ten Lease deletions (30 CloudSnapshots each,
# about 5 minutes): HA_ARGS='--kill-trials 0 --term-trials 0 --stop-trials 0'.
# 100 CloudSnapshotRestores with claims at once under the simulator's gateway limits; minutes long,
# not part of `make test`; e.g. RESTORE_ARGS='--count 200 --throttle create_volume=5'.
bench-restore: tools
	$(BIN)/python -m bench.restore $(RESTORE_ARGS)

ha-trials: tools
	$(BIN)/python -m bench.ha $(HA_ARGS)

# Two replicas, EVS faults, the leader SIGKILLed during creates and deletes; minutes long, not part
# of `make test` (tests/e2e/test_chaos_small.py is its small version); e.g. CHAOS_ARGS='--seed 2'.
chaos: tools
	$(BIN)/python -m bench.chaos $(CHAOS_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
