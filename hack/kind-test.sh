#!/usr/bin/env bash
# make kind-test: the e2e tests against a real cluster built with kind.
#
#   1. build the image (Dockerfile) and create a kind cluster with one worker per node of
#      hack/cluster/nodepools.yaml (labelled and tainted at registration; `python -m hack.cluster.kind config`),
#      patch the pools' fake GPU/TPU/Neuron capacity into the workers' node status, `kind load` the image;
#   2. with FRW_CERT_MODE=cert-manager, install cert-manager and wait for its webhook;
#   3. helm install the chart (--wait), run `helm test`; helm install one more release per preset, each selecting
#      only pods labelled e2e.flyte.org/webhook=preset-<name> (what the placement tests create);
#   4. run tests/e2e against the cluster, placement tests included: pytest tests/e2e -m e2e --existing-cluster;
#   5. delete the cluster (KEEP_CLUSTER=1 keeps it, and prints how to reach it).
#
# Needs a running Docker engine and kind (plus kubectl and helm: $FRW_BIN_DIR from `make control-plane`, else
# PATH). Where one is missing it says which and exits 1: it never passes without having run the tests.
#
# Environment:
#   FRW_CERT_MODE          self-managed (default) | cert-manager
#   KIND_CLUSTER_NAME      default frw-kind-<pid>
#   KIND_NODE_IMAGE        kind node image (default: kind's own default)
#   FRW_IMAGE              image name:tag to build and load (default flyte-resources-webhook:kind)
#   CERT_MANAGER_VERSION   default v1.16.2 (its release manifest is applied from the cert-manager project)
#   KEEP_CLUSTER=1         do not delete the cluster at the end
#   PYTEST_ARGS            extra pytest arguments
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
K8S_VERSION=${K8S_VERSION:-1.36.3}
BIN_DIR=${FRW_BIN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/flyte-resources-webhook/k8s-v$K8S_VERSION}
CERT_MODE=${FRW_CERT_MODE:-self-managed}
CLUSTER=${KIND_CLUSTER_NAME:-frw-kind-$$}
IMAGE=${FRW_IMAGE:-flyte-resources-webhook:kind}
CERT_MANAGER_VERSION=${CERT_MANAGER_VERSION:-v1.16.2}
RELEASE=flyte-resources-webhook
NAMESPACE=flyte-resources-webhook
PYTHON=${PYTHON:-$REPO_ROOT/.venv/bin/python}

say() { printf '==> kind-test: %s\n' "$*" >&2; }
die() { printf 'kind-test: error: %s\n' "$*" >&2; exit 1; }

case "$CERT_MODE" in
  self-managed|cert-manager) ;;
  *) die "FRW_CERT_MODE must be self-managed or cert-manager, not '$CERT_MODE'" ;;
esac

tool() {  # tool NAME: $BIN_DIR/NAME, else NAME on PATH, else empty
  if [ -x "$BIN_DIR/$1" ]; then echo "$BIN_DIR/$1"; else command -v "$1" || true; fi
}

# --------------------------------------------------------------------------------------------- prerequisites
missing=()
command -v docker >/dev/null || missing+=("docker (the Docker CLI) is not on PATH")
if command -v docker >/dev/null && ! docker info >/dev/null 2>&1; then
  missing+=("no Docker engine answers 'docker info' (start Docker, or set DOCKER_HOST)")
fi
command -v kind >/dev/null || missing+=("kind is not on PATH (https://kind.sigs.k8s.io/docs/user/quick-start/#installation)")
KUBECTL=$(tool kubectl)
HELM=$(tool helm)
[ -n "$KUBECTL" ] || missing+=("kubectl is missing (run 'make control-plane' or put kubectl on PATH)")
[ -n "$HELM" ] || missing+=("helm is missing (run 'make control-plane' or put helm on PATH)")
[ -x "$PYTHON" ] || missing+=("$PYTHON is missing (run 'make install')")
if [ ${#missing[@]} -gt 0 ]; then
  printf 'kind-test: cannot run the kind e2e tests:\n' >&2
  printf '  - %s\n' "${missing[@]}" >&2
  printf 'kind-test: FAILED (nothing was tested)\n' >&2
  exit 1
fi

WORK=$(mktemp -d)
export KUBECONFIG=$WORK/kubeconfig
created=0

dump_state() {
  say "cluster state for debugging"
  "$KUBECTL" get pods -A -o wide >&2 || true
  "$KUBECTL" -n "$NAMESPACE" describe deployment "$RELEASE" >&2 || true
  "$KUBECTL" -n "$NAMESPACE" logs "deployment/$RELEASE" --all-containers --tail=200 >&2 || true
  "$KUBECTL" get mutatingwebhookconfiguration "$RELEASE" -o yaml >&2 || true
}

cleanup() {
  local rc=$?
  if [ "$rc" -ne 0 ] && [ "$created" -eq 1 ]; then dump_state; fi
  if [ "$created" -eq 1 ]; then
    if [ "${KEEP_CLUSTER:-0}" = "1" ]; then
      say "keeping cluster $CLUSTER: export KUBECONFIG=$KUBECONFIG; delete it with: kind delete cluster --name $CLUSTER"
    else
      say "deleting cluster $CLUSTER"
      kind delete cluster --name "$CLUSTER" >&2 || true
      rm -rf "$WORK"
    fi
  else
    rm -rf "$WORK"
  fi
  if [ "$rc" -eq 0 ]; then say "PASSED ($CERT_MODE)"; else printf 'kind-test: FAILED (exit %s)\n' "$rc" >&2; fi
  exit "$rc"
}
trap cleanup EXIT

# ------------------------------------------------------------------------------------------------- run
say "building image $IMAGE"
docker build -t "$IMAGE" "$REPO_ROOT"

say "creating kind cluster $CLUSTER"
(cd "$REPO_ROOT" && "$PYTHON" -m hack.cluster.kind config) > "$WORK/kind-config.yaml"
create_args=(create cluster --name "$CLUSTER" --kubeconfig "$KUBECONFIG" --config "$WORK/kind-config.yaml" --wait 300s)
[ -n "${KIND_NODE_IMAGE:-}" ] && create_args+=(--image "$KIND_NODE_IMAGE")
created=1
kind "${create_args[@]}"

say "patching the node pools' GPU/TPU/Neuron capacity into the workers' status"
(cd "$REPO_ROOT" && "$PYTHON" -m hack.cluster.kind capacity)

say "loading $IMAGE into the cluster"
kind load docker-image "$IMAGE" --name "$CLUSTER"

if [ "$CERT_MODE" = cert-manager ]; then
  say "installing cert-manager $CERT_MANAGER_VERSION"
  "$KUBECTL" apply -f "https://github.com/cert-manager/cert-manager/releases/download/$CERT_MANAGER_VERSION/cert-manager.yaml"
  "$KUBECTL" -n cert-manager wait --for=condition=Available deployment --all --timeout=300s
fi

say "helm install $RELEASE (certificates.mode=$CERT_MODE)"
"$HELM" install "$RELEASE" "$REPO_ROOT/charts/flyte-resources-webhook" \
  --namespace "$NAMESPACE" --create-namespace \
  --set image.repository="${IMAGE%:*}" --set image.tag="${IMAGE##*:}" --set image.pullPolicy=Never \
  --set certificates.mode="$CERT_MODE" \
  --wait --timeout 300s

say "waiting for the caBundle of MutatingWebhookConfiguration $RELEASE"
for _ in $(seq 1 60); do
  ca=$("$KUBECTL" get mutatingwebhookconfiguration "$RELEASE" -o jsonpath='{.webhooks[0].clientConfig.caBundle}')
  [ -n "$ca" ] && break
  sleep 2
done
[ -n "$ca" ] || die "the caBundle of MutatingWebhookConfiguration $RELEASE is still empty after 120 s"

say "helm test $RELEASE"
"$HELM" test "$RELEASE" --namespace "$NAMESPACE" --logs --timeout 180s

for preset in eks gke karpenter gfd amd; do
  say "helm install frw-preset-$preset (config.preset=$preset, only pods labelled e2e.flyte.org/webhook=preset-$preset)"
  "$HELM" install "frw-preset-$preset" "$REPO_ROOT/charts/flyte-resources-webhook" \
    --namespace "frw-preset-$preset" --create-namespace \
    --set image.repository="${IMAGE%:*}" --set image.tag="${IMAGE##*:}" --set image.pullPolicy=Never \
    --set certificates.mode="$CERT_MODE" --set config.preset="$preset" \
    --set-json "webhook.objectSelector={\"matchLabels\":{\"e2e.flyte.org/webhook\":\"preset-$preset\"}}" \
    --wait --timeout 300s
done

say "pytest tests/e2e against the kind cluster"
cd "$REPO_ROOT"
# shellcheck disable=SC2086
"$PYTHON" -m pytest tests/e2e -m e2e --existing-cluster --webhook-namespace "$NAMESPACE" ${PYTEST_ARGS:-}
