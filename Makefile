# flyte-resources-webhook: every setup step lives here, so a fresh machine needs only `make run` / `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
K8S_VERSION ?= 1.36.3
export K8S_VERSION
FRW_BIN_DIR ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/flyte-resources-webhook/k8s-v$(K8S_VERSION)
export FRW_BIN_DIR
PYTEST_ARGS ?=

.PHONY: help install lint typecheck unit e2e test control-plane run run-dev pod-network prometheus demo bench fuzz soak manifests check-manifests kind-test clean

help: ## list the targets
	@awk 'BEGIN{FS=":.*## "} /^[a-z-]+:.*## /{printf "  make %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed ## create .venv and install the package with its dev tools

lint: install ## ruff, mypy (strict for engine and mutation), import-linter layering contract
	$(VENV)/bin/ruff check webhook tests hack
	$(VENV)/bin/ruff format --check webhook tests hack
	$(VENV)/bin/mypy webhook
	$(VENV)/bin/lint-imports

control-plane: ## build/fetch kube-apiserver, kube-scheduler, kube-controller-manager, kwok, etcd, kubectl, helm into $(FRW_BIN_DIR) (idempotent)
	@bash hack/control-plane.sh

unit: install ## tests that need no control plane
	$(PY) -m pytest -m 'not e2e' $(PYTEST_ARGS)

e2e: install control-plane pod-network prometheus ## end-to-end tests on a local cluster: etcd, kube-apiserver, kube-scheduler, kube-controller-manager, KWOK nodes
	$(PY) -m pytest -m e2e $(PYTEST_ARGS)

test: install lint control-plane pod-network prometheus ## everything CI runs: lint, unit, examples, chart checks and e2e tests
	$(PY) -m pytest $(PYTEST_ARGS)

HELM ?= $(if $(wildcard $(FRW_BIN_DIR)/helm),$(FRW_BIN_DIR)/helm,helm)
HELM_ARGS ?=

run: install pod-network ## the chart installed by helm: into $$KUBECONFIG's cluster (image values in HELM_ARGS), else on a local cluster (examples applied and placed), serving until Ctrl-C
	@if [ -n "$$KUBECONFIG" ]; then \
	  $(HELM) upgrade --install flyte-resources-webhook charts/flyte-resources-webhook --namespace flyte-resources-webhook \
	    --create-namespace --wait --timeout 300s $(HELM_ARGS) && \
	  $(HELM) test flyte-resources-webhook --namespace flyte-resources-webhook; \
	elif [ "$$(id -u)" = 0 ]; then \
	  $(MAKE) --no-print-directory control-plane && $(PY) -m hack.local_cluster --serve --live-chart; \
	else \
	  echo "make run: not root, so the chart's pods get no network namespaces: the webhook runs as a local process behind the chart's MutatingWebhookConfiguration (URL) instead"; \
	  $(MAKE) --no-print-directory control-plane && $(PY) -m hack.local_cluster --serve; \
	fi

run-dev: install ## the webhook as a local process registered on $$KUBECONFIG's cluster (`run --dev`)
	$(PY) -m webhook.cli run --dev $(RUN_ARGS)

pod-network: ## iproute2 (`ip`), for the network namespaces of the live chart's pods (installed from Debian if missing)
	@command -v ip >/dev/null || { echo "installing iproute2 (ip) from Debian"; \
	  $(if $(filter 0,$(shell id -u)),,sudo) apt-get update -qq && $(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -qq iproute2; }

prometheus: ## Prometheus and promtool (the chart's alert rules are checked, unit-tested and run against the live chart), installed from Debian if missing
	@command -v promtool >/dev/null && command -v prometheus >/dev/null || { echo "installing prometheus (prometheus, promtool) from Debian"; \
	  $(if $(filter 0,$(shell id -u)),,sudo) apt-get update -qq && \
	  $(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -qq --no-install-recommends prometheus; }

demo: install control-plane ## like `make run` on the local cluster (before/after and where each example landed), then exits
	$(PY) -m hack.local_cluster

bench: install control-plane ## admission server vs kopf's no-op floor, then a 1000-pod burst through the apiserver (none, MAP, patch-less webhook, ours)
	@command -v wrk >/dev/null || { echo "installing wrk (the load generator) from Debian"; \
	  $(if $(filter 0,$(shell id -u)),,sudo) apt-get update -qq && $(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -qq wrk; }
	@$(PY) -m hack.bench; server=$$?; $(PY) -m hack.burst $(BURST_ARGS); burst=$$?; exit $$((server | burst))

fuzz: install ## 100,000 hostile AdmissionReviews over HTTPS: counts 5xx and invalid replies, p99/max latency, max CPU per review
	$(PY) -m hack.fuzz $(FUZZ_ARGS)

soak: install ## 100,000 distinct reviews with annotation values up to the 4 KiB cap: the server's RSS after 1,000 and after all
	$(PY) -m hack.soak $(SOAK_ARGS)

manifests: install control-plane ## render manifests/ from the chart
	$(PY) -m hack.manifests --write

check-manifests: install control-plane ## fail when manifests/ is out of sync with the chart
	$(PY) -m hack.manifests --check

kind-test: install ## the e2e and placement tests on a kind cluster (needs Docker and kind; fails loudly without them)
	@bash hack/kind-test.sh

clean: ## remove the virtualenv and caches (the binary cache in $(FRW_BIN_DIR) stays)
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
