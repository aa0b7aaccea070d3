"""A real node on this machine: kubelet + containerd + runc + the CNI bridge plugin, registered with the local
control plane next to the KWOK nodes. The chart's pods run here, from the images of `hack.images`.

* network (`NodeNetwork`): a Linux bridge holding the gateway of the node's own /24 pod subnet (in 10.250.0.0/16,
  an address range that exists only on this machine); the CNI `bridge` + `host-local` plugins give every pod a
  veth on it and an address from the subnet, so the host (kube-apiserver) reaches pod IPs directly. The bridge
  also holds the first address of the cluster's Service range (10.251.<n>.0/24), the ClusterIP of the `kubernetes`
  Service, and kube-apiserver listens there on port 443: in-cluster clients (the webhook, kubectl in `helm test`)
  reach the apiserver at `KUBERNETES_SERVICE_HOST:443` without kube-proxy. No other ClusterIP is routed (the
  apiserver reaches the webhook through its Service's endpoints, `--enable-aggregator-routing`).
* containerd: its own root, state, socket and CNI configuration under `/var/lib/frw-node/<id>` and
  `/run/frw-node/<id>`; images imported with `ctr -n k8s.io images import` (no registry is reachable);
* kubelet: a client certificate for `system:node:<name>` (group `system:nodes`, so the Node authorizer and the
  NodeRestriction admission plugin apply as on any cluster), cgroupfs under its own cgroup root `/frw-<id>`, the
  node labelled as a CPU pool node and `e2e.flyte.org/real-node=true` (`hack.cluster.live` sends the chart's
  namespace there; no preset's cluster label, so the placement examples never land here).

Quirks of the machine, handled only where detected (a normal host needs none of them):
* no `CAP_SYS_RESOURCE` in the capability bounding set: runc cannot lower `oom_score_adj`, so containerd's CRI
  runs with `restrict_oom_score_adj = true`;
* cgroup v1: kubelet 1.36 refuses it unless `failCgroupV1: false`.

Needs root. What a killed run leaves behind (processes in its cgroups, mounts, the bridge) the next run removes
(`remove_leftovers`), from the state file `/run/frw-node/<id>.json`.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hack.cluster.nodepools import POOL_LABEL
from hack.cluster.processes import Binaries, HarnessError, Process, free_port, wait_until

STATE_ROOT = Path("/run/frw-node")
DATA_ROOT = Path("/var/lib/frw-node")
CGROUP_ROOT = Path("/sys/fs/cgroup")
POD_SUBNETS = ipaddress.ip_network("10.250.0.0/16")  # one /24 per node
SERVICE_SUBNETS = ipaddress.ip_network("10.251.0.0/16")  # the Service range: the /24 with the same third byte
CNI_BIN_DIR = Path("/usr/lib/cni")  # Debian's containernetworking-plugins
REAL_NODE_LABEL = "e2e.flyte.org/real-node"
NODE_READY_TIMEOUT = 90.0
CAP_SYS_RESOURCE = 24
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"  # the sandbox image; hack.images builds it from the pause binary


class NodeUnavailable(HarnessError):
    """Not root, or a binary of the real node is missing."""


# --------------------------------------------------------------------------------------------- the machine


def cap_sys_resource_missing() -> bool:
    """True when the capability bounding set lacks CAP_SYS_RESOURCE (some sandboxes drop it)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapBnd:"):
            return not int(line.split()[1], 16) >> CAP_SYS_RESOURCE & 1
    return False


def cgroup_v1() -> bool:
    return not (CGROUP_ROOT / "cgroup.controllers").is_file()


def cgroup_hierarchies() -> list[Path]:
    """Where a cgroup of the node goes: the unified hierarchy, or (v1) every mounted hierarchy."""
    if not cgroup_v1():
        return [CGROUP_ROOT]
    return sorted({p.resolve() for p in CGROUP_ROOT.iterdir() if (p / "cgroup.procs").is_file()})


def run(*argv: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise HarnessError(f"`{' '.join(argv)}` failed ({result.returncode}): {result.stderr.strip()[-1500:]}")
    return result


def node_binaries(binaries: Binaries) -> dict[str, Path]:
    """kubelet, containerd, its shim, ctr, crictl from the binary cache; runc from PATH (`make node`)."""
    names = ("kubelet", "containerd", "containerd-shim-runc-v2", "ctr", "crictl")
    found = {name: binaries.directory / name for name in names}
    missing = [name for name, path in found.items() if not os.access(path, os.X_OK)]
    runc = shutil.which("runc")
    if runc is None:
        missing.append("runc (Debian package runc)")
    missing += [f"{CNI_BIN_DIR}/{p}" for p in ("bridge", "host-local", "loopback") if not (CNI_BIN_DIR / p).exists()]
    if missing:
        raise NodeUnavailable(f"the real node needs {', '.join(missing)}: run `make node`")
    found["runc"] = Path(runc or "runc")
    return found


def require_root() -> None:
    if os.geteuid() != 0:
        raise NodeUnavailable(
            f"the real node (kubelet, containerd, bridge networking) needs root (euid {os.geteuid()})"
        )


# --------------------------------------------------------------------------------------------- network


@dataclass
class NodeNetwork:
    """The node's bridge: the pod subnet's gateway, and the `kubernetes` Service's ClusterIP for the apiserver."""

    run_id: str
    pod_subnet: ipaddress.IPv4Network
    service_subnet: ipaddress.IPv4Network

    @property
    def bridge(self) -> str:
        return f"frw{self.run_id}"

    @property
    def gateway(self) -> str:
        return str(self.pod_subnet.network_address + 1)

    @property
    def api_address(self) -> str:
        """The first address of the Service range: the ClusterIP the apiserver gives the `kubernetes` Service."""
        return str(self.service_subnet.network_address + 1)

    @classmethod
    def create(cls, run_id: str) -> NodeNetwork:
        used = run("ip", "-4", "addr", "show").stdout + run("ip", "-4", "route", "show").stdout
        thirds = list(range(256))
        random.shuffle(thirds)
        for third in thirds:
            pods = ipaddress.ip_network(f"{POD_SUBNETS.network_address + third * 256}/24")
            services = ipaddress.ip_network(f"{SERVICE_SUBNETS.network_address + third * 256}/24")
            if not any(str(n.network_address).rsplit(".", 1)[0] + "." in used for n in (pods, services)):
                break
        else:
            raise HarnessError(f"no free /24 left in {POD_SUBNETS}")
        net = cls(run_id, pods, services)  # type: ignore[arg-type]
        try:
            run("ip", "link", "add", "name", net.bridge, "type", "bridge")
            # The gateway first: the CNI bridge plugin accepts a bridge whose first address is its gateway.
            run("ip", "addr", "add", f"{net.gateway}/{pods.prefixlen}", "dev", net.bridge)
            run("ip", "addr", "add", f"{net.api_address}/32", "dev", net.bridge)
            run("ip", "link", "set", net.bridge, "up")
        except BaseException:
            net.destroy()
            raise
        return net

    def cni_config(self, ipam_dir: Path) -> dict[str, Any]:
        return {
            "cniVersion": "1.0.0",
            "name": f"frw-{self.run_id}",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": self.bridge,
                    "isGateway": True,
                    "ipMasq": False,  # the addresses never leave this machine
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": str(self.pod_subnet), "gateway": self.gateway}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(ipam_dir),
                    },
                }
            ],
        }

    def destroy(self) -> None:
        remove_bridge(self.bridge)


def remove_bridge(bridge: str) -> None:
    """The bridge and the host ends of the veths still on it (a pod's netns going away removes its own)."""
    out = run("ip", "-br", "link", "show", "master", bridge, check=False).stdout
    for line in out.splitlines():
        if line.strip():
            run("ip", "link", "delete", line.split()[0].split("@")[0], check=False)
    run("ip", "link", "delete", bridge, check=False)


# --------------------------------------------------------------------------------------------- the node


class RealNode:
    """containerd + kubelet on this machine, as node `name`, for the control plane whose CA is `ca`."""

    def __init__(self, run_dir: Path, binaries: Binaries, network: NodeNetwork, *, name: str) -> None:
        require_root()
        self.bins = node_binaries(binaries)
        self.run_dir = run_dir
        self.network = network
        self.name = name
        self.run_id = network.run_id
        self.state = STATE_ROOT / self.run_id  # sockets: short paths
        self.data = DATA_ROOT / self.run_id  # containerd's root (overlay mounts), kubelet's root
        self.cgroup = f"/frw-{self.run_id}"
        self.containerd: Process | None = None
        self.kubelet: Process | None = None
        self.quirks: list[str] = []

    @classmethod
    def new_run_id(cls) -> str:
        return secrets.token_hex(3)

    @property
    def socket(self) -> Path:
        return self.state / "containerd.sock"

    @property
    def pod_logs(self) -> Path:
        return self.data / "pod-logs"

    def record(self) -> None:
        """The state file the next run reads if this one is killed before `stop`."""
        STATE_ROOT.mkdir(parents=True, exist_ok=True)
        state = {"pid": os.getpid(), "bridge": self.network.bridge, "cgroup": self.cgroup, "data": str(self.data),
                 "state": str(self.state)}  # fmt: skip
        (STATE_ROOT / f"{self.run_id}.json").write_text(json.dumps(state))

    # ------------------------------------------------------------------------------------ start

    def start_runtime(self, images: dict[str, tuple[Path, str]]) -> threading.Thread:
        """containerd (from the calling thread: children die with the thread that started them), then the images
        imported in a thread of their own, which the caller joins before `start_kubelet` (an import takes seconds;
        the control plane can start meanwhile)."""
        self.record()
        for path in (self.state, self.data, self.run_dir):
            path.mkdir(parents=True, exist_ok=True)
        self._make_cgroups()
        self._start_containerd()
        self.import_error: BaseException | None = None

        def work() -> None:
            try:
                self._import(images)
            except BaseException as exc:  # re-raised by start_kubelet
                self.import_error = exc

        thread = threading.Thread(target=work, name="image-import", daemon=True)
        thread.start()
        return thread

    def start_kubelet(self, importing: threading.Thread, server: str, ca_file: Path, cert: Path, key: Path) -> None:
        """Once the images are in: kubelet, registering the node; `wait_ready()` waits for Ready."""
        importing.join()
        if self.import_error is not None:
            raise HarnessError(f"importing the images into containerd: {self.import_error}")
        self._start_kubelet(server, ca_file, cert, key)

    def _make_cgroups(self) -> None:
        for hierarchy in cgroup_hierarchies():
            path = hierarchy / self.cgroup.lstrip("/")
            path.mkdir(exist_ok=True)
            # A new v1 cpuset is empty: nothing could join it until it has the parent's CPUs and memory nodes.
            for name in ("cpuset.cpus", "cpuset.mems"):
                if (path / name).is_file() and not (path / name).read_text().strip():
                    (path / name).write_text((hierarchy / name).read_text())

    def _start_containerd(self) -> None:
        cni_dir = self.data / "cni"
        cni_dir.mkdir(parents=True, exist_ok=True)
        (cni_dir / "10-frw.conflist").write_text(json.dumps(self.network.cni_config(self.data / "ipam"), indent=1))
        restrict_oom = cap_sys_resource_missing()
        if restrict_oom:
            self.quirks.append("no CAP_SYS_RESOURCE in the bounding set: restrict_oom_score_adj = true")
        config = self.run_dir / "containerd.toml"
        config.write_text(
            CONTAINERD_CONFIG.format(
                root=self.data / "containerd", state=self.state / "containerd", socket=self.socket,
                cni_bin=CNI_BIN_DIR, cni_conf=cni_dir, runc=self.bins["runc"],
                restrict_oom=str(restrict_oom).lower(), sandbox=PAUSE_IMAGE,
            )
        )  # fmt: skip
        env = {**os.environ, "PATH": f"{self.bins['containerd'].parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
        self.containerd = Process(
            "containerd", [str(self.bins["containerd"]), "--config", str(config)], self.run_dir / "containerd.log",
            env=env,
        ).start()  # fmt: skip
        wait_until(
            lambda: self.ctr("version", check=False).returncode == 0,
            timeout=30, what="containerd to answer", alive=self.containerd.exited,
        )  # fmt: skip

    def ctr(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return run(str(self.bins["ctr"]), "--address", str(self.socket), "--namespace", "k8s.io", *args,
                   check=check, timeout=timeout)  # fmt: skip

    def crictl(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return run(str(self.bins["crictl"]), "--runtime-endpoint", f"unix://{self.socket}", "--timeout", "30s",
                   *args, check=check, timeout=timeout)  # fmt: skip

    def _import(self, images: dict[str, tuple[Path, str]]) -> None:
        """reference -> (tarball, the reference it was saved under): imported, then tagged as pods name it."""
        for reference, (tarball, saved_as) in images.items():
            self.ctr("images", "import", "--local", str(tarball), timeout=300)
            self.ctr("images", "tag", "--force", saved_as, reference)
            # Pinned: kubelet's image garbage collector never removes it (it could not be pulled back).
            self.ctr("images", "label", reference, "io.cri-containerd.pinned=pinned")

    def _start_kubelet(self, server: str, ca_file: Path, cert: Path, key: Path) -> None:
        kubeconfig = self.run_dir / "kubelet.kubeconfig"
        kubeconfig.write_text(
            yaml.safe_dump({
                "apiVersion": "v1", "kind": "Config",
                "clusters": [{"name": "local", "cluster": {"server": server, "certificate-authority": str(ca_file)}}],
                "users": [{"name": self.name, "user": {"client-certificate": str(cert), "client-key": str(key)}}],
                "contexts": [{"name": "local", "context": {"cluster": "local", "user": self.name}}],
                "current-context": "local",
            })
        )  # fmt: skip
        self.healthz_port = free_port()
        config: dict[str, Any] = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": self.network.gateway,
            "port": free_port(),
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": self.healthz_port,
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(ca_file)},
            },
            "authorization": {"mode": "Webhook"},
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": self.cgroup,
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "failSwapOn": False,
            "podCIDR": str(self.network.pod_subnet),
            "podLogsDir": str(self.pod_logs),
            "volumePluginDir": str(self.data / "volume-plugins"),
            "resolvConf": "/etc/resolv.conf",
            # A shared machine's disk and memory say nothing about this node: no eviction; the images cannot be
            # pulled again, so no image garbage collection either.
            "evictionHard": {"memory.available": "1Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            # ConfigMap and Secret volumes follow their objects at each pod sync (default: every minute).
            "syncFrequency": "10s",
            "serializeImagePulls": False,
            "rotateCertificates": False,
        }
        if cgroup_v1():
            config["failCgroupV1"] = False
            self.quirks.append("cgroup v1: failCgroupV1: false")
        path = self.run_dir / "kubelet.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.kubelet = Process(
            "kubelet",
            [
                str(self.bins["kubelet"]),
                f"--config={path}",
                f"--kubeconfig={kubeconfig}",
                f"--root-dir={self.data / 'kubelet'}",
                f"--cert-dir={self.data / 'kubelet-pki'}",
                f"--hostname-override={self.name}",
                f"--node-ip={self.network.gateway}",
                f"--node-labels={POOL_LABEL}=cpu,{REAL_NODE_LABEL}=true",
                "--v=1",
            ],
            self.run_dir / "kubelet.log",
        ).start()

    def exited(self) -> str | None:
        for process in (self.containerd, self.kubelet):
            if process is not None and (reason := process.exited()):
                return reason
        return None

    def wait_ready(self, core: Any) -> None:
        """Until the Node is Ready (kubelet registered, the runtime and its CNI network ready)."""

        def ready() -> bool:
            node = core.read_node(self.name)
            return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])

        wait_until(ready, timeout=NODE_READY_TIMEOUT, what=f"node {self.name} Ready", alive=self.exited, interval=0.5)

    # ------------------------------------------------------------------------------------ containers

    def kill_container(self, container_id: str, sig: str = "SIGKILL") -> None:
        """Signal a container's process through containerd (`containerd://<id>` from the pod's status)."""
        self.ctr("tasks", "kill", "--signal", sig, container_id.removeprefix("containerd://"))

    # ------------------------------------------------------------------------------------ stop

    def stop(self) -> None:
        """kubelet, then every pod sandbox (containers stopped, CNI torn down), containerd, the cgroups, the
        mounts and directories; the bridge is the network's."""
        if self.kubelet is not None:
            self.kubelet.stop(timeout=15)
        if self.containerd is not None and self.containerd.exited() is None:
            with contextlib.suppress(HarnessError, subprocess.TimeoutExpired):
                self.crictl("rmp", "--all", "--force", timeout=90)
            self.containerd.stop(timeout=15)
        cleanup(self.cgroup, self.data, self.state)
        (STATE_ROOT / f"{self.run_id}.json").unlink(missing_ok=True)


def _kill_cgroup_processes(cgroup: str) -> None:
    for hierarchy in cgroup_hierarchies():
        top = hierarchy / cgroup.lstrip("/")
        if not top.is_dir():
            continue
        for procs in top.rglob("cgroup.procs"):
            with contextlib.suppress(OSError):
                for pid in procs.read_text().split():
                    with contextlib.suppress(ProcessLookupError, ValueError):
                        os.kill(int(pid), signal.SIGKILL)


def _remove_cgroup(cgroup: str) -> None:
    for hierarchy in cgroup_hierarchies():
        top = hierarchy / cgroup.lstrip("/")
        if not top.is_dir():
            continue
        for path in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                path.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()


def cleanup(cgroup: str, data: Path, state: Path) -> None:
    """Whatever still runs in the node's cgroups (containers, shims) is killed; mounts under its directories are
    unmounted (deepest first); the cgroups and directories go."""
    _kill_cgroup_processes(cgroup)
    # The shims live outside the pods' cgroups: find them by their containerd address.
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                cmdline = (proc / "cmdline").read_bytes()
                if b"containerd-shim" in cmdline and str(state).encode() in cmdline:
                    os.kill(int(proc.name), signal.SIGKILL)
    time.sleep(0.5)
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith((str(data), str(state)))), key=len, reverse=True):
        run("umount", "-l", mount, check=False)
    for _ in range(10):
        _remove_cgroup(cgroup)
        if not any((h / cgroup.lstrip("/")).exists() for h in cgroup_hierarchies()):
            break
        time.sleep(0.5)
    shutil.rmtree(data, ignore_errors=True)
    shutil.rmtree(state, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_leftovers() -> list[str]:
    """Clean up after runs whose process is gone (killed before `stop`)."""
    removed = []
    for state_file in STATE_ROOT.glob("*.json") if STATE_ROOT.is_dir() else ():
        try:
            state = json.loads(state_file.read_text())
        except (OSError, ValueError):
            state_file.unlink(missing_ok=True)
            continue
        if _alive(int(state.get("pid", 0))):
            continue
        cleanup(state["cgroup"], Path(state["data"]), Path(state["state"]))
        remove_bridge(state["bridge"])
        state_file.unlink(missing_ok=True)
        removed.append(state["bridge"])
    return removed


CONTAINERD_CONFIG = """\
version = 3
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.erofs",
                    "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing",
                    "io.containerd.nri.v1.nri"]

[grpc]
  address = "{socket}"

[ttrpc]
  address = "{socket}.ttrpc"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "{sandbox}"

[plugins.'io.containerd.cri.v1.runtime']
  restrict_oom_score_adj = {restrict_oom}
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["{cni_bin}"]
    conf_dir = "{cni_conf}"
    max_conf_num = 1
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "{runc}"
        SystemdCgroup = false
"""
