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
FLYTEKIT_VENV ?= .venv-flytekit

.PHONY: help install lint generate typecheck unit explore e2e test control-plane node images flyte prometheus run run-dev demo bench fuzz soak manifests check-manifests kind-test image push package clean

help: ## list the targets
	@awk 'BEGIN{FS=":.*## "} /^[a-z-]+:.*## /{gsub(/\$$\$$/, "$$", $$2); printf "  make %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed ## create .venv and install the package with its dev tools

lint: install ## ruff, mypy (strict for engine and mutation), import-linter layering contract, generated files in sync
	$(VENV)/bin/ruff check webhook tests hack
	$(VENV)/bin/ruff format --check webhook tests hack
	$(VENV)/bin/mypy webhook
	$(VENV)/bin/lint-imports
	$(PY) -m hack.generate --check

generate: install ## render from their one source: the chart's config schema, values.yaml key list and both README config tables (config model), the chart's shared webhook definitions (rules, matchConditions, prefix), the README's placement table
	$(PY) -m hack.generate

control-plane: ## build/fetch kube-apiserver, kube-scheduler, kube-controller-manager, kubelet, kwok, etcd, kubectl, helm into $(FRW_BIN_DIR) (idempotent)
	@bash hack/control-plane.sh

node: control-plane ## the real node's binaries: containerd, ctr, crictl, pause into $(FRW_BIN_DIR); runc, CNI plugins from Debian (idempotent)
	@bash hack/node.sh

images: install node ## the webhook image from Dockerfile on a debootstrapped base, pause and kubectl images, offline; cached by their inputs
	$(PY) -m hack.images

$(FLYTEKIT_VENV)/.installed: hack/flytekit-requirements.txt
	$(PYTHON) -m venv $(FLYTEKIT_VENV)
	$(FLYTEKIT_VENV)/bin/python -m pip install -q --upgrade pip
	$(FLYTEKIT_VENV)/bin/python -m pip install -q -r hack/flytekit-requirements.txt
	touch $@

flyte: $(FLYTEKIT_VENV)/.installed ## build flytepropeller + kubectl-flyte (Flyte v1.16.8) into the binary cache and create the flytekit venv (idempotent)
	@bash hack/flyte-propeller.sh >/dev/null

unit: install ## tests that need no binary and start nothing (not tests/e2e/, marked e2e, nor tests/chart/, marked tools); property tests derandomized
	$(PY) -m pytest -m 'not e2e and not tools' $(PYTEST_ARGS)

EXPLORE_RUNS ?= 10
explore: install ## the property tests with fresh random inputs, EXPLORE_RUNS times (hypothesis profile explore): a failing example is printed and replayed from .hypothesis/ until fixed; keep it as an @example
	@for run in $$(seq $(EXPLORE_RUNS)); do \
	  echo "explore: run $$run of $(EXPLORE_RUNS)"; \
	  FRW_HYPOTHESIS_PROFILE=explore $(PY) -m pytest -q -m 'hypothesis and not e2e and not tools' $(PYTEST_ARGS) || exit 1; \
	done

e2e: install control-plane node images flyte prometheus ## end-to-end tests on a local cluster: etcd, kube-apiserver, kube-scheduler, kube-controller-manager, KWOK nodes, a real node, real flytepropeller, Prometheus; and the chart checks (helm, promtool)
	$(PY) -m pytest -m 'e2e or tools' $(PYTEST_ARGS)

test: install lint control-plane node images flyte prometheus ## everything CI runs: lint, unit, examples, chart checks and e2e tests (real flytepropeller executions included)
	$(PY) -m pytest $(PYTEST_ARGS)

HELM ?= $(if $(wildcard $(FRW_BIN_DIR)/helm),$(FRW_BIN_DIR)/helm,helm)
HELM_ARGS ?=

DEMO_ARGS ?=

run: install ## the chart installed by helm: into $$KUBECONFIG's cluster (image values in HELM_ARGS), else on a local cluster (examples placed, each under its preset; DEMO_ARGS=--full shows every pod before/after), serving until Ctrl-C
	@if [ -n "$$KUBECONFIG" ]; then \
	  $(HELM) upgrade --install flyte-resources-webhook charts/flyte-resources-webhook --namespace flyte-resources-webhook \
	    --create-namespace --wait --timeout 300s $(HELM_ARGS) && \
	  $(HELM) test flyte-resources-webhook --namespace flyte-resources-webhook; \
	elif [ "$$(id -u)" = 0 ]; then \
	  $(MAKE) --no-print-directory images && $(PY) -m hack.local_cluster --serve --live-chart $(DEMO_ARGS); \
	else \
	  echo "make run: not root, so no real node (kubelet, containerd) can run the chart's pods: the webhook runs as a local process behind the chart's MutatingWebhookConfiguration (URL) instead"; \
	  $(MAKE) --no-print-directory control-plane && $(PY) -m hack.local_cluster --serve $(DEMO_ARGS); \
	fi

run-dev: install ## the webhook as a local process registered on $$KUBECONFIG's cluster (`run --dev`)
	$(PY) -m webhook.cli run --dev $(RUN_ARGS)

prometheus: ## Prometheus and promtool (the chart's alert rules are checked, unit-tested and run against the live chart), installed from Debian if missing
	@command -v promtool >/dev/null && command -v prometheus >/dev/null || { echo "installing prometheus (prometheus, promtool) from Debian"; \
	  $(if $(filter 0,$(shell id -u)),,sudo) apt-get update -qq && \
	  $(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -qq --no-install-recommends prometheus; }

demo: install control-plane ## like `make run` on the local cluster (where each example landed; DEMO_ARGS=--full for before/after), then exits
	$(PY) -m hack.local_cluster $(DEMO_ARGS)

bench: install control-plane ## admission server vs kopf's no-op floor, then a 1000-pod burst through the apiserver (none, MAP, patch-less webhook, ours)
	@command -v wrk >/dev/null || { echo "installing wrk (the load generator) from Debian"; \
	  $(if $(filter 0,$(shell id -u)),,sudo) apt-get update -qq && $(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -qq wrk; }
	@$(PY) -m hack.bench; server=$$?; $(PY) -m hack.burst $(BURST_ARGS); burst=$$?; exit $$((server | burst))

fuzz: install ## 100,000 hostile AdmissionReviews over HTTPS, with the default config and with policies: counts 5xx and invalid replies, p99/max latency, max CPU per review
	$(PY) -m hack.fuzz $(FUZZ_ARGS) && $(PY) -m hack.fuzz --config examples/config/policies.yaml $(FUZZ_ARGS)

soak: install ## 100,000 distinct reviews with annotation values up to the 4 KiB cap: the server's RSS after 1,000 and after all
	$(PY) -m hack.soak $(SOAK_ARGS)

manifests: install control-plane ## render manifests/ from the chart
	$(PY) -m hack.manifests --write

check-manifests: install control-plane ## fail when manifests/ is out of sync with the chart
	$(PY) -m hack.manifests --check

VERSION ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE ?= ghcr.io/flyteorg/flyte-resources-webhook
IMAGE_TAG ?= $(VERSION)

image: ## build the webhook image IMAGE:IMAGE_TAG with docker (default ghcr.io/flyteorg/flyte-resources-webhook:<version>)
	docker build -t $(IMAGE):$(IMAGE_TAG) --build-arg VERSION=$(IMAGE_TAG) .

push: image ## push IMAGE:IMAGE_TAG (log in to the registry first)
	docker push $(IMAGE):$(IMAGE_TAG)

package: install control-plane ## the chart as dist/flyte-resources-webhook-VERSION.tgz: appVersion IMAGE_TAG, image.repository IMAGE
	$(PY) -m hack.package --version $(VERSION) --image $(IMAGE) --tag $(IMAGE_TAG)

kind-test: install ## the e2e and placement tests on a kind cluster (needs Docker and kind; fails loudly without them)
	@bash hack/kind-test.sh

clean: ## remove the virtualenvs and caches (the binary caches under ~/.cache/flyte-resources-webhook stay)
	rm -rf $(VENV) $(FLYTEKIT_VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
