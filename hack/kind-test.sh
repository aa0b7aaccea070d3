#!/usr/bin/env bash
# make kind-test: the chart and the e2e tests against a real cluster built with kind.
#
#   1. pick the node image: $KIND_NODE_IMAGE if set; kind's default when a registry answers (registry.k8s.io and
#      Docker Hub); otherwise the offline node image of hack/kind_image.py, built from Debian packages, Go modules
#      and the project's own Kubernetes v1.36.3 build (hack/kind-tools.sh builds kind, kubeadm, kube-proxy, etcd,
#      CoreDNS), cached under ~/.cache/flyte-resources-webhook (cold: about 20 min here; warm: nothing, or a
#      `docker load` of the cached tarball, 7 s);
#   2. build the webhook image: `docker build` of the Dockerfile with a registry, `make images` (Debian's Python,
#      wheels built on the host, the helm test's kubectl image from the cached kubectl) without one;
#   3. create a kind cluster: a control plane + one worker per accelerator family (`python -m hack.cluster.kind
#      config`: cpu, eks-a100, eks-trn1, gke-tpu-v5e, amd-mi300x; KIND_POOLS to change), labelled and tainted as
#      those pools of hack/cluster/nodepools.yaml at registration; with the offline image, each node's pod network
#      is wired by `python -m hack.cluster.kind network` (no kindnetd); the pools' GPU/TPU/Neuron capacity is
#      patched into the workers' node status; `kind load` the image(s);
#   4. with FRW_CERT_MODE=cert-manager, install cert-manager and wait for its webhook (needs a registry);
#   5. helm install the chart (--wait), run `helm test`; helm install one more release per preset, each selecting
#      only pods labelled e2e.flyte.org/webhook=preset-<name> (what the placement tests create);
#   6. run tests/e2e against the cluster: pytest tests/e2e -m e2e -rs --existing-cluster (tests that need the
#      local cluster - a local webhook process, one node per pool, KWOK, their own release - say so and skip);
#   7. delete the cluster (KEEP_CLUSTER=1 keeps it, and prints how to reach it).
#
# Needs: Linux or macOS with a Docker engine (started here as root when `dockerd` is installed but not running),
# Python (make install), and with no registry also Go, debootstrap and the caches of `make control-plane node`.
# kind, kubectl and helm come from the caches ($FRW_BIN_DIR, ~/.cache/flyte-resources-webhook/kind-<version>),
# else PATH; kind is built with Go when missing. Where the capability bounding set lacks CAP_SYS_RESOURCE (runc
# then cannot start a --privileged kind node), hack/kind/runc-capfix becomes Docker's default runtime: passed to
# the dockerd started here, or written to /etc/docker/daemon.json with a SIGHUP to a running one (as root).
# Where something is missing it says which and exits 1: it never
# passes without having run the tests. Time here (2 shared cores, no registry): the offline pieces the first time
# about 20 min (CoreDNS 13 of them); then about 12 min a run (the e2e suite 9 min of it, the live-chart drills
# about 5); see README ("kind").
#
# Environment:
#   FRW_CERT_MODE          self-managed (default) | cert-manager
#   KIND_CLUSTER_NAME      default frw-kind-<pid>
#   KIND_NODE_IMAGE        kind node image (default: kind's own with a registry, the offline image without)
#   KIND_POOLS             the worker pools, comma-separated (default cpu,eks-a100,eks-trn1,gke-tpu-v5e,amd-mi300x)
#   FRW_IMAGE              image name:tag to build and load (default flyte-resources-webhook:kind)
#   CERT_MANAGER_VERSION   default v1.16.2 (its release manifest is applied from the cert-manager project)
#   KEEP_CLUSTER=1         do not delete the cluster at the end
#   PYTEST_ARGS            extra pytest arguments
set -euo pipefail

if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
  exit 0
fi

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
K8S_VERSION=${K8S_VERSION:-1.36.3}
KIND_VERSION=${KIND_VERSION:-v0.33.0}
CACHE_ROOT=${XDG_CACHE_HOME:-$HOME/.cache}/flyte-resources-webhook
BIN_DIR=${FRW_BIN_DIR:-$CACHE_ROOT/k8s-v$K8S_VERSION}
KIND_DIR=${FRW_KIND_DIR:-$CACHE_ROOT/kind-$KIND_VERSION}
CERT_MODE=${FRW_CERT_MODE:-self-managed}
CLUSTER=${KIND_CLUSTER_NAME:-frw-kind-$$}
IMAGE=${FRW_IMAGE:-flyte-resources-webhook:kind}
CERT_MANAGER_VERSION=${CERT_MANAGER_VERSION:-v1.16.2}
RELEASE=flyte-resources-webhook
NAMESPACE=flyte-resources-webhook
PYTHON=${PYTHON:-$REPO_ROOT/.venv/bin/python}
export KIND_VERSION

START=$SECONDS
say() { printf '==> kind-test [%4ds]: %s\n' "$((SECONDS - START))" "$*" >&2; }
die() { printf 'kind-test: error: %s\n' "$*" >&2; exit 1; }

case "$CERT_MODE" in
  self-managed|cert-manager) ;;
  *) die "FRW_CERT_MODE must be self-managed or cert-manager, not '$CERT_MODE'" ;;
esac

tool() {  # tool NAME [DIR]: DIR/NAME or $BIN_DIR/NAME, else NAME on PATH, else empty
  if [ -x "${2:-$BIN_DIR}/$1" ]; then echo "${2:-$BIN_DIR}/$1"; else command -v "$1" || true; fi
}

registry_reachable() {  # any HTTP answer (401 included) from both registries kind's default image needs
  local url code
  for url in https://registry.k8s.io/v2/ https://registry-1.docker.io/v2/; do
    code=$(curl -s -m 5 -o /dev/null -w '%{http_code}' "$url" 2>/dev/null || true)
    [ -n "$code" ] && [ "$code" != 000 ] || return 1
  done
}

# Where the capability bounding set lacks CAP_SYS_RESOURCE, Docker cannot start a --privileged container (a kind
# node) with runc alone: the runtime hack/kind/runc-capfix drops that capability from the container's spec first.
CAPFIX=$KIND_DIR/runc-capfix
needs_capfix() {
  local bnd
  bnd=$(awk '/^CapBnd/ {print $2}' /proc/self/status 2>/dev/null || true)
  [ -n "$bnd" ] && [ $(( 0x$bnd >> 24 & 1 )) -eq 0 ]
}

# A Docker engine: started here only where dockerd is installed, not answering, and we are root (a laptop's
# Docker Desktop or systemd-managed engine is left alone).
ensure_docker() {
  command -v docker >/dev/null || return 0
  local runtime=()
  if needs_capfix; then
    mkdir -p "$KIND_DIR" && install -m 0755 "$REPO_ROOT/hack/kind/runc-capfix" "$CAPFIX"
    runtime=(--add-runtime "frw-capfix=$CAPFIX" --default-runtime frw-capfix)
  fi
  if ! docker info >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v dockerd >/dev/null; then
    mkdir -p "$CACHE_ROOT"
    say "starting dockerd ${runtime[*]} (log: $CACHE_ROOT/dockerd.log)"
    nohup dockerd "${runtime[@]}" >> "$CACHE_ROOT/dockerd.log" 2>&1 < /dev/null &
    for _ in $(seq 1 120); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  fi
  if [ ${#runtime[@]} -gt 0 ] && docker info >/dev/null 2>&1 &&
    [ "$(docker info --format '{{.DefaultRuntime}}')" != frw-capfix ]; then
    # A running engine learns a runtime from its config file on SIGHUP (runtimes are reloadable).
    [ "$(id -u)" = 0 ] && [ -f /var/run/docker.pid ] ||
      die "no CAP_SYS_RESOURCE here: Docker needs the runtime $CAPFIX as its default (dockerd --add-runtime frw-capfix=$CAPFIX --default-runtime frw-capfix)"
    say "registering the runtime frw-capfix ($CAPFIX) in /etc/docker/daemon.json and reloading dockerd (SIGHUP)"
    mkdir -p /etc/docker
    "$PYTHON" - "$CAPFIX" <<'PY'
import json, pathlib, sys
path = pathlib.Path("/etc/docker/daemon.json")
config = json.loads(path.read_text()) if path.is_file() and path.read_text().strip() else {}
config.setdefault("runtimes", {})["frw-capfix"] = {"path": sys.argv[1]}
config["default-runtime"] = "frw-capfix"
path.write_text(json.dumps(config, indent=2) + "\n")
PY
    kill -HUP "$(cat /var/run/docker.pid)"
    for _ in $(seq 1 40); do
      [ "$(docker info --format '{{.DefaultRuntime}}' 2>/dev/null)" = frw-capfix ] && return 0
      sleep 0.5
    done
    die "dockerd did not take the runtime frw-capfix (see its log)"
  fi
}

# --------------------------------------------------------------------------------------------- prerequisites
ensure_docker
missing=()
command -v docker >/dev/null || missing+=("docker (the Docker CLI) is not on PATH")
if command -v docker >/dev/null && ! docker info >/dev/null 2>&1; then
  missing+=("no Docker engine answers 'docker info' (start Docker, or set DOCKER_HOST)")
fi
KIND=$(tool kind "$KIND_DIR")
if [ -z "$KIND" ] && command -v go >/dev/null; then
  bash "$REPO_ROOT/hack/kind-tools.sh" kind
  KIND=$(tool kind "$KIND_DIR")
fi
[ -n "$KIND" ] || missing+=("kind is not on PATH and Go is missing to build it (https://kind.sigs.k8s.io/docs/user/quick-start/#installation)")
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
# Debian's docker client matches Debian's engine; kind calls plain `docker`.
[ -x /usr/bin/docker ] && export PATH="/usr/bin:$PATH"

OFFLINE=0
NODE_IMAGE=${KIND_NODE_IMAGE:-}
if [ -z "$NODE_IMAGE" ] && ! registry_reachable; then
  OFFLINE=1
  say "no container registry answers: the offline node image (hack/kind-tools.sh, hack/kind_image.py)"
  bash "$REPO_ROOT/hack/kind-tools.sh"
  NODE_IMAGE=$(cd "$REPO_ROOT" && "$PYTHON" -m hack.kind_image)
  say "node image $NODE_IMAGE"
fi
if [ "$CERT_MODE" = cert-manager ] && [ "$OFFLINE" = 1 ]; then
  die "FRW_CERT_MODE=cert-manager needs cert-manager's images from a registry (quay.io); none answers here"
fi

WORK=$(mktemp -d)
export KUBECONFIG=$WORK/kubeconfig
created=0

dump_state() {
  say "cluster state for debugging"
  "$KUBECTL" get nodes -o wide >&2 || true
  "$KUBECTL" get pods -A -o wide >&2 || true
  "$KUBECTL" -n "$NAMESPACE" describe deployment "$RELEASE" >&2 || true
  "$KUBECTL" -n "$NAMESPACE" logs "deployment/$RELEASE" --all-containers --tail=200 >&2 || true
  "$KUBECTL" get mutatingwebhookconfiguration "$RELEASE" -o yaml >&2 || true
}

unroute_host() {  # the host routes to the pod CIDRs `hack.cluster.kind network` added
  [ -f "$WORK/routes" ] || return 0
  local cidr
  while read -r cidr; do ip route del "$cidr" 2>/dev/null || true; done < "$WORK/routes"
}

cleanup() {
  local rc=$?
  if [ "$rc" -ne 0 ] && [ "$created" -eq 1 ]; then dump_state; fi
  if [ "$created" -eq 1 ]; then
    if [ "${KEEP_CLUSTER:-0}" = "1" ]; then
      say "keeping cluster $CLUSTER: export KUBECONFIG=$KUBECONFIG; delete it with: $KIND delete cluster --name $CLUSTER"
    else
      say "deleting cluster $CLUSTER"
      "$KIND" delete cluster --name "$CLUSTER" >&2 || true
      unroute_host
      rm -rf "$WORK"
    fi
  else
    rm -rf "$WORK"
  fi
  if [ "$rc" -eq 0 ]; then say "PASSED ($CERT_MODE) in $((SECONDS - START)) s"; else printf 'kind-test: FAILED (exit %s)\n' "$rc" >&2; fi
  exit "$rc"
}
trap cleanup EXIT

# ------------------------------------------------------------------------------------------------- run
LOAD=("$IMAGE")
if [ "$OFFLINE" = 1 ]; then
  say "building image $IMAGE offline (make images: Debian's Python, the host's wheels) and the helm test's kubectl image"
  (cd "$REPO_ROOT" && "$PYTHON" -m hack.images >&2)
  while read -r tag tarball saved; do  # the images the chart names, tagged back from their saved names
    docker image inspect "$saved" >/dev/null 2>&1 || docker load -i "$tarball" >&2
    case "$tag" in
      */flyte-resources-webhook:*) docker tag "$saved" "$IMAGE" ;;
      */kubectl:*) docker tag "$saved" "$tag"; LOAD+=("$tag") ;;
    esac
  done < <(cd "$REPO_ROOT" && "$PYTHON" -c 'from hack.images import images
for i in images(): print(i.tag, i.tarball, i.saved_as)')
else
  say "building image $IMAGE"
  docker build -t "$IMAGE" "$REPO_ROOT"
fi

say "creating kind cluster $CLUSTER (node image: ${NODE_IMAGE:-the default of kind})"
config_args=(config)
[ "$OFFLINE" = 1 ] && config_args+=(--offline)
(cd "$REPO_ROOT" && "$PYTHON" -m hack.cluster.kind "${config_args[@]}") > "$WORK/kind-config.yaml"
create_args=(create cluster --name "$CLUSTER" --kubeconfig "$KUBECONFIG" --config "$WORK/kind-config.yaml")
[ -n "$NODE_IMAGE" ] && create_args+=(--image "$NODE_IMAGE")
[ "$OFFLINE" = 1 ] || create_args+=(--wait 300s)
[ "${KEEP_CLUSTER:-0}" = 1 ] && create_args+=(--retain)
created=1
"$KIND" "${create_args[@]}"

if [ "$OFFLINE" = 1 ]; then
  say "wiring the pod network (ptp + host-local per node, routes between nodes and from the host)"
  "$KUBECTL" get nodes -o jsonpath='{range .items[*]}{.spec.podCIDR}{"\n"}{end}' > "$WORK/routes"
  (cd "$REPO_ROOT" && "$PYTHON" -m hack.cluster.kind network --kubectl "$KUBECTL")
  "$KUBECTL" wait node --all --for=condition=Ready --timeout=300s
fi

say "patching the node pools' GPU/TPU/Neuron capacity into the workers' status"
(cd "$REPO_ROOT" && "$PYTHON" -m hack.cluster.kind capacity)

# Only where the chart's pods can run: the nodes without taints (the tainted pools' workers run the test pods, whose
# sandbox image every node has).
untainted=$("$KUBECTL" get nodes -o go-template='{{range .items}}{{if not .spec.taints}}{{.metadata.name}},{{end}}{{end}}')
for image in "${LOAD[@]}"; do
  say "loading $image into the untainted nodes (${untainted%,})"
  "$KIND" load docker-image "$image" --name "$CLUSTER" --nodes "${untainted%,}"
done

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
    --set certificates.mode="$CERT_MODE" --set config.preset="$preset" --set fullnameOverride="frw-preset-$preset" \
    --set-json "webhook.objectSelector={\"matchLabels\":{\"e2e.flyte.org/webhook\":\"preset-$preset\"}}" \
    --wait --timeout 300s
done

say "pytest tests/e2e against the kind cluster"
cd "$REPO_ROOT"
# shellcheck disable=SC2086
"$PYTHON" -m pytest tests/e2e -m e2e -rs --existing-cluster --webhook-namespace "$NAMESPACE" ${PYTEST_ARGS:-}
