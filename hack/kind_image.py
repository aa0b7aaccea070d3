"""A kind node image built without any container registry, for `make kind-test` where none is reachable.

kind's own node images come from a registry (docker.io/kindest/node), and `kind build node-image` pulls kind's base
image and every image kubeadm deploys. Here each piece is built from Debian packages, Go modules and the project's
own Kubernetes build instead:

* a root file system: `debootstrap --variant=minbase bookworm` with the packages kind's base image installs
  (systemd, iptables, conntrack, ...), plus Debian's runc and CNI plugins, imported with `docker import`;
* kind's base image: that root file system with kind's own `images/base/files` (entrypoint, systemd units,
  containerd config) from the kind module, and the containerd/ctr/shim/crictl of `make node`;
* the images kubeadm deploys, under the names kubeadm asks for: kube-apiserver, kube-controller-manager,
  kube-scheduler (`FROM scratch` + the binary of `make control-plane`), kube-proxy (the root file system with
  its iptables + the binary), etcd and CoreDNS at kubeadm's versions (`hack/kind-tools.sh`), pause (`make node`);
* the node image: kind's base with kubeadm, kubelet and kubectl in /usr/bin, the images imported into
  containerd's store unpacked on first use (what `kind build node-image` does), committed with `docker commit`.

Not in it: kindnetd (`sigs.k8s.io/kindnet` is not served by the module proxy) - clusters made from this image set
`networking.disableDefaultCNI` and `python -m hack.cluster.kind network` writes each node's CNI configuration
(ptp + host-local on the node's pod CIDR) and the routes between nodes; local-path-provisioner - kind falls back to
a default StorageClass without a provisioner (no test here uses volumes).

The image is named by a hash of all its inputs (`frw-kind-node:v<k8s>-<hash>`), saved under
`<cache>/images/kind-node-<hash>.tar` and loaded from there into a Docker that lacks it.
Run as `python -m hack.kind_image` (prints the image's name on stdout); `--print` prints it without building.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hack.cluster.processes import HarnessError, default_bin_dir
from hack.images import CACHE_ROOT, DEBIAN_SUITE, IMAGE_DIR, _digest, docker, ensure_docker, has_image, say

K8S_VERSION = default_bin_dir().name.removeprefix("k8s-v")
KIND_VERSION = os.environ.get("KIND_VERSION", "v0.33.0")
KIND_DIR = Path(os.environ.get("FRW_KIND_DIR", CACHE_ROOT / f"kind-{KIND_VERSION}"))
ETCD_TAG = "3.6.8-0"  # kubeadm v1.36's DefaultEtcdVersion; hack/kind-tools.sh builds etcd 3.6.8
COREDNS_TAG = "v1.14.2"  # kubeadm v1.36's CoreDNSVersion
PAUSE_TAGS = ("3.10.2", "3.10")  # kubeadm's, and the sandbox image of kind's containerd config
LAYOUT = b"kind-node-1"  # how the image is assembled (part of its hash): a change here rebuilds it
# kind's base image packages (images/base/Dockerfile), less NFS/iSCSI/fuse/e2fsprogs no test here uses, plus what
# kind builds from source there (runc, CNI plugins) and what minbase lacks (dbus for systemd, apt's keyring).
ROOTFS_PACKAGES = ("systemd", "systemd-sysv", "dbus", "conntrack", "iptables", "nftables", "iproute2", "ethtool",
                   "util-linux", "mount", "kmod", "libseccomp2", "pigz", "bash", "ca-certificates", "curl", "jq",
                   "procps", "runc", "containernetworking-plugins")  # fmt: skip
ROOTFS_TRIM = ("var/lib/apt/lists", "var/cache/apt", "usr/share/doc", "usr/share/man", "usr/share/info",
               "usr/share/locale")  # fmt: skip
CONTROL_PLANE = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
NODE_BINARIES = ("kubeadm", "kubelet", "kubectl")
CONTAINERD_BINARIES = ("containerd", "containerd-shim-runc-v2", "ctr", "crictl")

# On top of kind's files: containerd may not lower oom_score_adj where the host's capability bounding set lacks
# CAP_SYS_RESOURCE (kind's entrypoint only allows for that under a user namespace).
OOM_QUIRK = """#!/bin/sh
# frw: without CAP_SYS_RESOURCE in the bounding set runc cannot lower oom_score_adj (CapBnd bit 24).
bnd=$(awk '/^CapBnd/ {print $2}' /proc/self/status)
if [ $(( 0x$bnd >> 24 & 1 )) -eq 0 ]; then
  sed -i 's/restrict_oom_score_adj = false/restrict_oom_score_adj = true/' /etc/containerd/config.toml
fi
"""


def kind_module() -> Path:
    """kind's module source (its images/base/files), from the Go module cache."""
    out = subprocess.run(["go", "mod", "download", "-json", f"sigs.k8s.io/kind@{KIND_VERSION}"],
                         capture_output=True, text=True, check=True, cwd=tempfile.gettempdir()).stdout  # fmt: skip
    return Path(json.loads(out)["Dir"])


def _binary(path: Path) -> Path:
    if not path.is_file():
        raise HarnessError(f"{path} is missing: run hack/kind-tools.sh (and make control-plane node) first")
    return path


def binaries() -> dict[str, Path]:
    bins = default_bin_dir()
    found = {name: bins / name for name in (*CONTROL_PLANE, *NODE_BINARIES, *CONTAINERD_BINARIES, "kube-proxy")}
    found |= {"pause": bins / "pause", "etcd": KIND_DIR / "etcd", "coredns": KIND_DIR / "coredns"}
    return {name: _binary(path) for name, path in found.items()}


def rootfs_tag() -> str:
    return f"frw-kind-rootfs:{DEBIAN_SUITE}-{_digest(' '.join(ROOTFS_PACKAGES).encode(), repr(ROOTFS_TRIM).encode())}"


def node_tag() -> str:
    parts = [LAYOUT, KIND_VERSION.encode(), rootfs_tag().encode(), OOM_QUIRK.encode()]
    parts += [f"{name}:".encode() + path.read_bytes() for name, path in sorted(binaries().items())]
    parts.append(Path(__file__).read_bytes())
    return f"frw-kind-node:v{K8S_VERSION}-{_digest(*parts)}"


def tarball(tag: str) -> Path:
    return IMAGE_DIR / f"kind-node-{tag.rsplit('-', 1)[1]}.tar"


# --------------------------------------------------------------------------------------------- pieces


def build_rootfs(tag: str) -> None:
    from hack.images import apt_install

    if shutil.which("debootstrap") is None:
        apt_install("debootstrap")
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="frw-kind-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        say(f"{tag}: debootstrap --variant=minbase {DEBIAN_SUITE} + kind's packages (1-3 min)")
        subprocess.run(["debootstrap", "--variant=minbase", f"--include={','.join(ROOTFS_PACKAGES)}", DEBIAN_SUITE,
                        str(rootfs), debian_mirror()], check=True, stdout=subprocess.DEVNULL)  # fmt: skip
        for path in ROOTFS_TRIM:
            shutil.rmtree(rootfs / path, ignore_errors=True)
        tar = subprocess.run(["tar", "-C", str(rootfs), "--numeric-owner", "--exclude=./dev/*", "--exclude=./proc/*",
                              "--exclude=./sys/*", "-c", "."], check=True, capture_output=True).stdout  # fmt: skip
    docker("import", "-", tag, stdin=tar)
    say(f"{tag}: {time.monotonic() - start:.0f} s")


def debian_mirror() -> str:
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.is_file():
        for line in sources.read_text().splitlines():
            if line.startswith("URIs:"):
                return line.split()[1]
    return "http://deb.debian.org/debian"


def build_context(files: dict[str, Path], dockerfile: str, tag: str) -> None:
    """`docker build -t tag` of `dockerfile` with `files` (name in the context -> source) copied in."""
    with tempfile.TemporaryDirectory(prefix="frw-kind-ctx-") as tmp:
        context = Path(tmp)
        for name, source in files.items():
            if source.is_dir():
                shutil.copytree(source, context / name)
            else:
                shutil.copy2(source, context / name)
        (context / "Dockerfile").write_text(dockerfile)
        docker("build", "-t", tag, str(context))


def base_dockerfile(rootfs: str) -> str:
    """kind's images/base/Dockerfile, with Debian's runc/CNI plugins and the project's containerd (the classic
    builder has no COPY --chmod)."""
    return f"""FROM {rootfs}
COPY files/ /kindfiles/
COPY bin/ /usr/local/bin/
RUN set -e; cd /kindfiles; \\
    install -m 0755 usr/local/bin/* /usr/local/bin/; \\
    mkdir -p /kind/bin /LICENSES /etc/kubernetes/manifests /etc/systemd/system/containerd.service.d; \\
    cp -r kind/. /kind/; chmod 0755 /kind /kind/bin /kind/bin/*; cp LICENSES/* /LICENSES/; \\
    cp etc/crictl.yaml /etc/; mkdir -p /etc/containerd /etc/default /etc/sysctl.d; \\
    cp etc/containerd/* /etc/containerd/; cp etc/default/* /etc/default/; cp etc/sysctl.d/* /etc/sysctl.d/; \\
    cp -r etc/systemd/system/. /etc/systemd/system/; rm -rf /kindfiles; \\
    install -m 0755 /usr/local/bin/frw-oom-quirk /kind/bin/frw-oom-quirk.sh; rm /usr/local/bin/frw-oom-quirk; \\
    printf '[Service]\\nExecStartPre=/kind/bin/frw-oom-quirk.sh\\n' \\
      > /etc/systemd/system/containerd.service.d/10-frw-oom.conf; \\
    mkdir -p /opt/cni/bin; \\
    for p in host-local loopback ptp portmap bridge; do ln -s /usr/lib/cni/$p /opt/cni/bin/$p; done; \\
    ln -s /usr/sbin/runc /usr/local/sbin/runc; \\
    find /lib/systemd/system/sysinit.target.wants/ -name systemd-tmpfiles-setup.service -delete; \\
    rm -f /lib/systemd/system/multi-user.target.wants/* /etc/systemd/system/*.wants/* \\
      /lib/systemd/system/local-fs.target.wants/* /lib/systemd/system/sockets.target.wants/*udev* \\
      /lib/systemd/system/sockets.target.wants/*initctl* /lib/systemd/system/basic.target.wants/*; \\
    echo ReadKMsg=no >> /etc/systemd/journald.conf; \\
    systemctl enable kubelet.service containerd.service undo-mount-hacks.service; \\
    systemctl mask systemd-binfmt.service; \\
    ctr oci spec \\
      | jq '.hooks.createContainer[.hooks.createContainer|length] |= . + {{"path": $p}}' \\
        --arg p /kind/bin/mount-product-files.sh \\
      | jq 'del(.process.rlimits)' > /etc/containerd/cri-base.json
ENV container=docker
STOPSIGNAL SIGRTMIN+3
ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]
"""


def component_images(bins: dict[str, Path], rootfs: str) -> dict[str, tuple[dict[str, Path], str]]:
    """registry reference -> (files, Dockerfile) of each image kubeadm deploys."""
    path_env = "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
    images: dict[str, tuple[dict[str, Path], str]] = {}
    for name in CONTROL_PLANE:
        images[f"registry.k8s.io/{name}:v{K8S_VERSION}"] = (
            {name: bins[name]}, f"FROM scratch\n{path_env}COPY {name} /usr/local/bin/{name}\n"
        )  # fmt: skip
    images[f"registry.k8s.io/kube-proxy:v{K8S_VERSION}"] = (
        {"kube-proxy": bins["kube-proxy"]}, f"FROM {rootfs}\nCOPY kube-proxy /usr/local/bin/kube-proxy\n"
    )  # fmt: skip
    images[f"registry.k8s.io/etcd:{ETCD_TAG}"] = (
        {"etcd": bins["etcd"]}, f"FROM scratch\n{path_env}COPY etcd /usr/local/bin/etcd\nCMD [\"etcd\"]\n"
    )  # fmt: skip
    images[f"registry.k8s.io/coredns/coredns:{COREDNS_TAG}"] = (
        {"coredns": bins["coredns"]}, 'FROM scratch\nCOPY coredns /coredns\nENTRYPOINT ["/coredns"]\n'
    )  # fmt: skip
    images[f"registry.k8s.io/pause:{PAUSE_TAGS[0]}"] = (
        {"pause": bins["pause"]}, 'FROM scratch\nCOPY pause /pause\nENTRYPOINT ["/pause"]\n'
    )  # fmt: skip
    return images


def assemble(tag: str, base: str, bins: dict[str, Path], images: list[str]) -> None:
    """kind's node image build: the node binaries into a container of the base image, the images into its
    containerd's content store (not unpacked: kind's nodes run with /var on a volume, unpacked at first use), then
    `docker commit`."""
    container = f"frw-kind-build-{os.getpid()}"
    docker("run", "-d", "--name", container, "--entrypoint=sleep", "--security-opt", "seccomp=unconfined", base,
           "infinity")  # fmt: skip
    try:

        def sh(script: str, stdin: bytes | None = None) -> None:
            docker("exec", *(["-i"] if stdin is not None else []), container, "bash", "-ec", script, stdin=stdin)

        for name in NODE_BINARIES:
            docker("cp", str(bins[name]), f"{container}:/usr/bin/{name}")
        sh(f"chmod 0755 /usr/bin/kube*; chown root:root /usr/bin/kube*; echo v{K8S_VERSION} > /kind/version")
        sh("nohup containerd > /var/log/containerd-build.log 2>&1 & echo $! > /run/frw-containerd.pid; "
           "for i in $(seq 1 100); do ctr version >/dev/null 2>&1 && exit 0; sleep 0.2; done; exit 1")  # fmt: skip
        for reference in images:
            saved = docker("save", reference).stdout
            sh("ctr -n k8s.io images import --all-platforms --no-unpack --digests -", stdin=saved)
        pause = f"registry.k8s.io/pause:{PAUSE_TAGS[0]}"
        for other in PAUSE_TAGS[1:]:
            sh(f"ctr -n k8s.io images tag --force {pause} registry.k8s.io/pause:{other}")
        # The container's PID 1 (sleep) reaps nobody: containerd has stopped once it is a zombie.
        sh(
            "pid=$(cat /run/frw-containerd.pid); kill $pid; "
            "while [ -e /proc/$pid ] && ! grep -q '^State:.Z' /proc/$pid/status; do sleep 0.2; done; "
            "rm -f /var/log/containerd-build.log /run/frw-containerd.pid"
        )
        docker("commit", "--change", 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]', container, tag)
    finally:
        docker("rm", "-f", "-v", container, check=False)


def build() -> str:
    """The node image's name, built (or loaded from its cached tarball) when Docker lacks it."""
    tag = node_tag()
    ensure_docker()
    if has_image(tag):
        return tag
    saved = tarball(tag)
    if saved.is_file():
        say(f"{tag}: docker load < {saved}")
        docker("load", "-i", str(saved))
        return tag
    start = time.monotonic()
    bins = binaries()
    rootfs = rootfs_tag()
    if not has_image(rootfs):
        build_rootfs(rootfs)
    base = f"frw-kind-base:{KIND_VERSION}-{tag.rsplit('-', 1)[1]}"
    say(f"{base}: kind's base image files over {rootfs}")
    files = {"files": kind_module() / "images/base/files", "bin": Path(tempfile.mkdtemp(prefix="frw-kind-bin-"))}
    try:
        for name in CONTAINERD_BINARIES:
            shutil.copy2(bins[name], files["bin"] / name)
        (files["bin"] / "frw-oom-quirk").write_text(OOM_QUIRK)
        build_context(files, base_dockerfile(rootfs), base)
    finally:
        shutil.rmtree(files["bin"], ignore_errors=True)
    components = component_images(bins, rootfs)
    for reference, (inputs, dockerfile) in components.items():
        say(f"{reference}: docker build")
        build_context(inputs, dockerfile, reference)
    say(f"{tag}: assembling (kubeadm, kubelet, kubectl; {len(components)} images into containerd)")
    assemble(tag, base, bins, list(components))
    docker("image", "rm", base, check=False)
    IMAGE_DIR.mkdir(parents=True, exist_ok=True)
    partial = saved.with_suffix(f".{os.getpid()}.partial")
    docker("save", "-o", str(partial), tag)
    partial.rename(saved)
    say(f"{tag}: built in {time.monotonic() - start:.0f} s, saved as {saved}")
    return tag


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hack.kind_image", description=__doc__.split("\n\n")[0])
    parser.add_argument("--print", action="store_true", help="print the image's name, build nothing")
    args = parser.parse_args(argv)
    try:
        print(node_tag() if args.print else build())
    except (HarnessError, subprocess.CalledProcessError) as exc:
        print(f"kind_image: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
