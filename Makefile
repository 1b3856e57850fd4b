# redisdb-operator: every entry point. Versions are pinned in versions.env and pyproject.toml.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export PYTHONPATH := $(CURDIR)/operator
export PATH := $(shell bash hack/build-k8s-tools.sh --print-bin-dir):$(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: help venv deps tools test unit e2e e2e-kind lint crds check-crds cluster-up cluster-down demo demo-down bench chaos clean

help:
	@echo "make demo        # its own local control plane + local provider + operator + sample -> REDIS_URL"
	@echo "                 # (make demo USE_CURRENT_CLUSTER=1 uses the cluster in your kubeconfig instead)"
	@echo "make test        # everything CI runs: lint, unit and end-to-end tests"
	@echo "make demo-down   # stop what make demo started"

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV) || { rm -rf $(VENV); \
	  echo "python3 -m venv failed: on Debian install python3-venv (sudo apt-get install python3-venv)" >&2; exit 1; }
	@$(PY) -m pip install -q --upgrade pip >/dev/null
	@$(PY) -m pip install -q -e '.[dev]'
	@touch $@

venv: $(VENV)/.installed

deps: venv
	@bash hack/install-system-deps.sh

tools:
	@bash hack/build-k8s-tools.sh >/dev/null
	@bash hack/build-promtool.sh >/dev/null

lint: venv
	$(VENV)/bin/ruff check operator tests
	$(VENV)/bin/ruff format --check operator tests
	$(VENV)/bin/mypy

crds: venv
	$(PY) -m redisdb_operator.cli gen-crds --out crds
	cp crds/*.yaml charts/redisdb-operator/files/crds/

unit: venv
	$(PY) -m pytest tests/unit -q

e2e: deps tools
	$(PY) -m pytest tests/e2e -q

# Needs Docker + kind (not available on the development VM): kind cluster, image build + load, helm install, e2e.
e2e-kind: venv
	bash hack/e2e-kind.sh

# The README's test command; .ci/run calls exactly this.
test: deps tools lint
	$(PY) -m pytest tests -q -ra

cluster-up: deps tools
	$(PY) -m redisdb_dev.cli cluster up

cluster-down: venv
	$(PY) -m redisdb_dev.cli cluster down

# Always its own control plane; the cluster in your kubeconfig only with USE_CURRENT_CLUSTER=1 (or the env var
# REDISDB_DEMO_USE_CURRENT_CLUSTER=1).
demo: deps tools
	$(PY) -m redisdb_dev.cli demo up $(if $(filter 1 true yes,$(USE_CURRENT_CLUSTER)),--use-current-cluster)

demo-down: venv
	$(PY) -m redisdb_dev.cli demo down

# ARGS are passed through, e.g. make bench ARGS="--quick --check" (--check: exit 1 when a target is missed).
bench: deps tools
	$(PY) -m redisdb_dev.bench $(ARGS)

# The long chaos soak (issue 9): >= 200 mixed ops with operator kills, provider faults, control-plane and
# provider restarts, bad input and a secret scan; counts per fault are printed and written to .run/chaos-report.json.
# `make test` runs the short version of the same suite.
chaos: deps tools
	REDISDB_CHAOS=long REDISDB_CHAOS_REPORT=$(CURDIR)/.run/chaos-report.json $(PY) -m pytest tests/chaos -q -ra --timeout=1500

clean:
	rm -rf $(VENV) .run
