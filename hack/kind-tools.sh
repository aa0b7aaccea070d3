#!/usr/bin/env bash
# Build what `make kind-test` needs beyond the local cluster's binaries, from the Go module proxy, idempotently:
#
#   $KIND_DIR/kind          sigs.k8s.io/kind (the CLI; every node image path needs it)
#   $KIND_DIR/etcd          etcd v$ETCD_VERSION        } only for the offline node image (hack/kind_image.py):
#   $KIND_DIR/coredns       CoreDNS $COREDNS_VERSION   } the versions kubeadm v$K8S_VERSION deploys
#   $BIN_DIR/kubeadm        } from the same Kubernetes module graph and build flags as hack/control-plane.sh's
#   $BIN_DIR/kube-proxy     } binaries (a sibling module, so the control plane's build is never touched)
#
# `hack/kind-tools.sh kind` builds kind only (about 1 min); with no argument everything (cold: 5-15 min on 2 busy
# cores, most of it kubeadm and kube-proxy; warm: nothing). kubelet, kubectl and containerd come from
# `make control-plane` and `make node`. Prints nothing but progress; binaries carry a version stamp.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-1.36.3}
KIND_VERSION=${KIND_VERSION:-v0.33.0}
ETCD_VERSION=${ETCD_VERSION:-3.6.8}      # kubeadm v1.36's DefaultEtcdVersion (3.6.8-0)
COREDNS_VERSION=${COREDNS_VERSION:-1.14.2}  # kubeadm v1.36's CoreDNSVersion
CACHE_ROOT=${XDG_CACHE_HOME:-$HOME/.cache}/flyte-resources-webhook
BIN_DIR=${FRW_BIN_DIR:-$CACHE_ROOT/k8s-v$K8S_VERSION}
KIND_DIR=${FRW_KIND_DIR:-$CACHE_ROOT/kind-$KIND_VERSION}
PYTHON=${PYTHON:-python3}

say() { printf '==> kind-tools: %s\n' "$*" >&2; }
die() { printf 'kind-tools: error: %s\n' "$*" >&2; exit 1; }
command -v go >/dev/null || die "'go' is not on PATH (Go >= 1.25 builds kind and the node image's binaries)"

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$KIND_DIR" "$BIN_DIR"

fresh() {  # fresh FILE VERSION: FILE exists with VERSION in FILE.version
  [ -x "$1" ] && [ "$(cat "$1.version" 2>/dev/null)" = "$2" ]
}

stamp() {  # stamp BUILT DEST VERSION
  install -m 0755 "$1" "$2"
  echo "$3" > "$2.version"
}

build_kind() {
  fresh "$KIND_DIR/kind" "$KIND_VERSION" && return 0
  say "kind $KIND_VERSION: go install (about 1 min)"
  GOBIN="$WORK/gobin" CGO_ENABLED=0 nice go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kind@$KIND_VERSION"
  stamp "$WORK/gobin/kind" "$KIND_DIR/kind" "$KIND_VERSION"
}

# A module holding only `require` lines: `go install mod@version` refuses modules whose go.mod has replace
# directives (etcd's server module replaces its siblings with ../ paths), a wrapper module does not.
build_in_wrapper() {  # build_in_wrapper NAME MODULE@VERSION PACKAGE DEST VERSION [ldflags]
  local name=$1 req=$2 pkg=$3 dest=$4 version=$5 ld=${6:-}
  fresh "$dest" "$version" && return 0
  say "$name $version: building from the Go module proxy (1-4 min)"
  local mod=$WORK/$name start=$SECONDS
  mkdir -p "$mod"
  (
    cd "$mod"
    go mod init "example.invalid/frw-$name" >/dev/null 2>&1
    printf '//go:build tools\n\npackage tools\n\nimport _ "%s"\n' "$pkg" > tools.go
    go get "$req" >/dev/null 2>&1 || die "go get $req failed"
    go mod tidy >/dev/null 2>&1 || die "go mod tidy failed for $req"
    CGO_ENABLED=0 nice go build -trimpath -ldflags "-s -w $ld" -o "$WORK/$name.bin" "$pkg"
  )
  stamp "$WORK/$name.bin" "$dest" "$version"
  say "$name built in $((SECONDS - start)) s"
}

# kubeadm and kube-proxy: the control plane's module graph (hack/control-plane.sh, kube-build-v$K8S_VERSION)
# copied into a sibling module that imports them too; compiled packages are shared through Go's build cache.
build_kube() {
  local missing=() c
  for c in kubeadm kube-proxy; do fresh "$BIN_DIR/$c" "v$K8S_VERSION" || missing+=("$c"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  local graph=$CACHE_ROOT/kube-build-v$K8S_VERSION mod=$CACHE_ROOT/kind-build-v$K8S_VERSION
  [ -f "$graph/go.mod" ] || die "no Kubernetes module graph in $graph: run 'make control-plane' first"
  local minor=${K8S_VERSION#1.}
  minor=${minor%%.*}
  mkdir -p "$mod"
  cp "$graph/go.mod" "$graph/go.sum" "$mod/"
  sed -i 's|^module .*|module example.invalid/frw-kind-bins|' "$mod/go.mod"
  printf '//go:build tools\n\npackage tools\n\nimport (\n\t_ "k8s.io/kubernetes/cmd/kubeadm"\n\t_ "k8s.io/kubernetes/cmd/kube-proxy"\n)\n' \
    > "$mod/tools.go"
  say "kubeadm, kube-proxy v$K8S_VERSION: compiling (cold: 5-10 min on 2 cores)"
  local start=$SECONDS ld="-s -w" p pkgs=()
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld="$ld -X $p.gitVersion=v$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  for c in "${missing[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
  (
    cd "$mod"
    go mod tidy >/dev/null 2>&1 || die "go mod tidy failed in $mod"
    CGO_ENABLED=0 nice go build -trimpath -tags grpcnotrace -ldflags "$ld" -o "$WORK/" "${pkgs[@]}"
  )
  for c in "${missing[@]}"; do stamp "$WORK/$c" "$BIN_DIR/$c" "v$K8S_VERSION"; done
  say "${missing[*]} built in $((SECONDS - start)) s"
}

build_kind
[ "${1:-all}" = kind ] && exit 0
build_kube
build_in_wrapper etcd "go.etcd.io/etcd/server/v3@v$ETCD_VERSION" go.etcd.io/etcd/server/v3 "$KIND_DIR/etcd" \
  "v$ETCD_VERSION"
build_in_wrapper coredns "github.com/coredns/coredns@v$COREDNS_VERSION" github.com/coredns/coredns \
  "$KIND_DIR/coredns" "v$COREDNS_VERSION"
