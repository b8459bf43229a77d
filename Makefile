# phasegate — `make demo` runs a release on a local stack; `make test` is what CI runs.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
KIND_CLUSTER ?= phasegate
IMAGE ?= phasegate:dev
SCENARIO ?= healthy
KUBE ?= local
CLUSTER_DIR ?= .cluster

.PHONY: help install lint format test test-all unit integration crds manifests bench demo prometheus chromium \
        cluster-build cluster-up cluster-down image kind-up e2e-kind kind-down clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(BIN)/phasegate: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

install: $(BIN)/phasegate ## create .venv and install phasegate with its test extra

lint: install ## ruff, mypy --strict, import-linter layers
	$(BIN)/ruff check operator tests benchmarks scripts cluster
	$(BIN)/ruff format --check operator tests benchmarks scripts cluster
	$(BIN)/mypy operator/phasegate
	MYPYPATH=tests $(BIN)/mypy benchmarks
	$(BIN)/mypy cluster/controlplane.py
	$(BIN)/lint-imports

format: install ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix operator tests benchmarks scripts cluster
	$(BIN)/ruff format operator tests benchmarks scripts cluster

prometheus: ## install Debian's prometheus when it is missing (needs root)
	@command -v prometheus >/dev/null || scripts/install-prometheus

chromium: ## install Debian's chromium when it is missing (the dashboard's browser tests; needs root)
	@command -v chromium >/dev/null || scripts/install-chromium

test: lint prometheus chromium cluster-build ## lint, then the test suite (local API and a real control plane) but the slow repetitions
	$(BIN)/pytest -q -m "not slow"

test-all: lint prometheus chromium cluster-build ## make test and the slow repetitions on the real control plane (regions, more fault scenarios)
	$(BIN)/pytest -q

unit: install ## the fast tests only (no Prometheus, no operator processes)
	$(BIN)/pytest -q -m "not integration"

integration: install prometheus chromium cluster-build ## the end-to-end scenarios on real processes
	$(BIN)/pytest -q -m integration

crds: install ## regenerate crds/ (and the chart's copy) from the models
	$(BIN)/phasegate crds --output crds
	cp crds/*.yaml charts/phasegate/crds/

manifests: install ## regenerate manifests/install/ from the chart's defaults
	$(BIN)/python scripts/render_install.py
	$(BIN)/python scripts/render_argocd.py

bench: install prometheus chromium ## benchmarks: engine, local API, operator, install footprint (figures printed)
	$(BIN)/python -m benchmarks

demo: install prometheus ## the reference release on the local stack (SCENARIO=healthy|bad-canary; KUBE=real: on `make cluster-up`'s control plane)
ifeq ($(KUBE),real)
	$(MAKE) cluster-up
	$(BIN)/phasegate demo --scenario $(SCENARIO) --kubeconfig $(CLUSTER_DIR)/kubeconfig
else
	$(BIN)/phasegate demo --scenario $(SCENARIO)
endif

# ---- a real control plane from Go modules, no Docker (cluster/versions.env pins it) -------
cluster-build: ## build etcd, kube-apiserver, controllers, kwok, helm once per version (cached)
	cluster/build all >/dev/null

cluster-up: install cluster-build ## start it; kubeconfig at .cluster/kubeconfig
	$(BIN)/python cluster/controlplane.py up --dir $(CLUSTER_DIR)

cluster-down: ## stop every process cluster-up started, by PID
	$(BIN)/python cluster/controlplane.py down --dir $(CLUSTER_DIR)

# ---- a real cluster, for users with Docker (not part of `make test`) ----------------------
image: ## build the operator image
	docker build -t $(IMAGE) .

kind-up: image ## kind cluster + Gateway API CRDs + phasegate's chart (needs Docker, kind, helm)
	kind create cluster --name $(KIND_CLUSTER)
	kind load docker-image $(IMAGE) --name $(KIND_CLUSTER)
	kubectl apply -f https://github.com/kubernetes-sigs/gateway-api/releases/download/v1.2.0/standard-install.yaml
	helm upgrade --install phasegate charts/phasegate -n phasegate-system --create-namespace \
	  --set image.repository=$(firstword $(subst :, ,$(IMAGE))) --set image.tag=$(lastword $(subst :, ,$(IMAGE))) \
	  --set image.pullPolicy=Never --set 'rbac.trafficProviders={gatewayAPI,istio,smi,nginx}' --wait

e2e-kind: install prometheus ## the end-to-end scenarios of tests/integration against the kind cluster
	scripts/e2e-kind $(KIND_CLUSTER) $(IMAGE)

kind-down: ## delete the kind cluster
	kind delete cluster --name $(KIND_CLUSTER)

clean: ## remove the venv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
