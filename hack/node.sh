#!/usr/bin/env bash
# Provide what the local cluster's real node runs (hack/cluster/node.py): kubelet, containerd (+ ctr and the runc
# shim), crictl (stops and removes the node's pods when it stops), a pause binary for the pod sandboxes, runc and
# the CNI plugins.
#
# kubelet comes from the same Kubernetes module graph and `go build` as the control plane (hack/control-plane.sh
# builds it with kube-apiserver; run first). containerd is built from its Go module, the pause binary from
# hack/node/pause, crictl from cri-tools' module; runc and the CNI plugins (bridge, host-local, loopback) are Debian's packages. Idempotent:
# binaries are cached in $FRW_BIN_DIR next to the control plane's, containerd with its version in a stamp file.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-1.36.3}
CONTAINERD_VERSION=${CONTAINERD_VERSION:-v2.3.7}
CRICTL_VERSION=${CRICTL_VERSION:-v1.37.0}
CACHE_ROOT=${XDG_CACHE_HOME:-$HOME/.cache}/flyte-resources-webhook
BIN_DIR=${FRW_BIN_DIR:-$CACHE_ROOT/k8s-v$K8S_VERSION}
HERE=$(cd "$(dirname "$0")" && pwd)

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'node: error: %s\n' "$*" >&2; exit 1; }
trap 'die "step failed at line $LINENO (see the output above)"' ERR

mkdir -p "$BIN_DIR"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

debian_packages() {
  local missing=()
  command -v runc >/dev/null || missing+=(runc)
  [ -x /usr/lib/cni/bridge ] && [ -x /usr/lib/cni/host-local ] && [ -x /usr/lib/cni/loopback ] ||
    missing+=(containernetworking-plugins)
  command -v ip >/dev/null || missing+=(iproute2)
  [ ${#missing[@]} -eq 0 ] && return 0
  say "installing ${missing[*]} from Debian"
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

build_containerd() {
  local stamp=$BIN_DIR/containerd.version c
  if [ "$(cat "$stamp" 2>/dev/null)" = "$CONTAINERD_VERSION" ]; then
    for c in containerd containerd-shim-runc-v2 ctr; do [ -x "$BIN_DIR/$c" ] || break; done
    [ -x "$BIN_DIR/$c" ] && return 0
  fi
  command -v go >/dev/null || die "containerd must be built and 'go' is not on PATH"
  say "containerd $CONTAINERD_VERSION (containerd, containerd-shim-runc-v2, ctr): building (first time: 1-3 min)"
  local start=$SECONDS mod=github.com/containerd/containerd/v2
  # No btrfs/devmapper/zfs snapshotters: the node uses overlayfs; they would need cgo and headers.
  GOBIN="$WORK/gobin" CGO_ENABLED=0 go install -trimpath -tags "no_btrfs no_devmapper no_zfs" \
    -ldflags "-s -w -X $mod/version.Version=$CONTAINERD_VERSION" \
    "$mod/cmd/containerd@$CONTAINERD_VERSION" "$mod/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION" \
    "$mod/cmd/ctr@$CONTAINERD_VERSION"
  for c in containerd containerd-shim-runc-v2 ctr; do install -m 0755 "$WORK/gobin/$c" "$BIN_DIR/$c"; done
  echo "$CONTAINERD_VERSION" > "$stamp"
  say "containerd built in $((SECONDS - start)) s"
}

build_crictl() {
  local stamp=$BIN_DIR/crictl.version
  [ -x "$BIN_DIR/crictl" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$CRICTL_VERSION" ] && return 0
  say "crictl $CRICTL_VERSION: building (first time: about 1 min)"
  GOBIN="$WORK/gobin" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"
  install -m 0755 "$WORK/gobin/crictl" "$BIN_DIR/crictl"
  echo "$CRICTL_VERSION" > "$stamp"
}

build_pause() {
  local out=$BIN_DIR/pause src=$HERE/node/pause
  [ -x "$out" ] && [ "$out" -nt "$src/main.go" ] && return 0
  say "pause: building $src"
  (cd "$src" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$WORK/pause" .)
  install -m 0755 "$WORK/pause" "$out"
}

[ -x "$BIN_DIR/kubelet" ] || die "no kubelet in $BIN_DIR: run hack/control-plane.sh (make control-plane) first"
debian_packages
build_containerd
build_crictl
build_pause

say "node binaries in $BIN_DIR:"
"$BIN_DIR/kubelet" --version >&2
"$BIN_DIR/containerd" --version >&2
out=$(runc --version) && printf '%s\n' "${out%%$'\n'*}" >&2
