"""Pod networking for the stand-in kubelet, the way a node's bridge CNI plugin does it: one Linux bridge on the
host holding the gateway address of a /24 pod subnet, and per pod a network namespace joined to the bridge by a
veth pair, with the pod IP inside it.

Why: the apiserver refuses Endpoints and EndpointSlices in 127.0.0.0/8, so a webhook the apiserver reaches
through its Service needs a real, routable pod IP, and the chart's process binds `0.0.0.0:9443` unchanged. The
addresses exist only on this machine (no route leaves it). kube-apiserver listens on the gateway address (see
`ControlPlane(bind_address=...)`), so processes in the namespaces reach it and it reaches their pod IPs.

Needs root and iproute2 (`ip`). Every run records what it created in `/run/frw-podnet/<id>.json` with its PID;
the next run removes what a killed run left behind (namespaces, their processes, the bridge).
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
from dataclasses import dataclass
from pathlib import Path

from hack.cluster.processes import HarnessError

STATE_DIR = Path("/run/frw-podnet")
SUBNET_POOL = ipaddress.ip_network("10.250.0.0/16")  # one /24 of it per run


class PodNetworkUnavailable(HarnessError):
    """Not root, or no `ip`: the pods cannot get network namespaces."""


def require_root() -> None:
    problems = []
    if os.geteuid() != 0:
        problems.append(f"not running as root (euid {os.geteuid()}): network namespaces and veth pairs need root")
    if shutil.which("ip") is None:
        problems.append("`ip` (iproute2) is not installed: `make install-iproute2` or apt-get install iproute2")
    if problems:
        raise PodNetworkUnavailable("pod networking for the live chart: " + "; ".join(problems))


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if check and result.returncode != 0:
        raise HarnessError(f"`ip {' '.join(args)}` failed: {result.stderr.strip()}")
    return result


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _netns_names() -> list[str]:
    out = ip("netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def delete_netns(name: str) -> None:
    """Kill what still runs in the namespace, then delete it (its veth end goes with it, and so does the peer)."""
    pids = ip("netns", "pids", name, check=False).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    ip("netns", "delete", name, check=False)


@dataclass
class PodNetwork:
    """The bridge and subnet of one run; `add_pod`/`remove_pod` make and remove a pod's namespace."""

    run_id: str
    subnet: ipaddress.IPv4Network

    @property
    def bridge(self) -> str:
        return f"frw{self.run_id}br"

    @property
    def netns_prefix(self) -> str:
        return f"frw-{self.run_id}-"

    @property
    def gateway(self) -> str:
        return str(self.subnet.network_address + 1)

    @property
    def pod_ips(self) -> list[str]:
        """Addresses for pods: all of the subnet but the network, the gateway and the broadcast address."""
        return [str(a) for a in list(self.subnet.hosts())[1:]]

    @classmethod
    def create(cls) -> PodNetwork:
        require_root()
        remove_leftovers()
        used = ip("-4", "route", "show").stdout + ip("-4", "addr", "show").stdout
        candidates = list(SUBNET_POOL.subnets(new_prefix=24))
        random.shuffle(candidates)
        for subnet in candidates:
            prefix = str(subnet.network_address).rsplit(".", 1)[0] + "."
            if prefix not in used:
                break
        else:
            raise HarnessError(f"no free /24 left in {SUBNET_POOL}")
        net = cls(secrets.token_hex(2), subnet)
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        net.state_file.write_text(json.dumps({"pid": os.getpid(), "bridge": net.bridge, "prefix": net.netns_prefix}))
        try:
            ip("link", "add", "name", net.bridge, "type", "bridge")
            ip("addr", "add", f"{net.gateway}/{subnet.prefixlen}", "dev", net.bridge)
            ip("link", "set", net.bridge, "up")
        except BaseException:
            net.destroy()
            raise
        return net

    @property
    def state_file(self) -> Path:
        return STATE_DIR / f"{self.run_id}.json"

    def netns_name(self, pod_ip: str) -> str:
        return self.netns_prefix + pod_ip.rsplit(".", 1)[1]

    def add_pod(self, pod_ip: str) -> str:
        """A namespace holding `pod_ip` on `eth0`, its default route via the gateway; returns its name."""
        ns = self.netns_name(pod_ip)
        last = pod_ip.rsplit(".", 1)[1]
        host_end, pod_end = f"frw{self.run_id}v{last}", f"frw{self.run_id}p{last}"
        delete_netns(ns)  # a namespace of a pod that had this address before and was not cleaned up
        ip("link", "delete", host_end, check=False)
        ip("netns", "add", ns)
        try:
            ip("link", "add", host_end, "type", "veth", "peer", "name", pod_end)
            ip("link", "set", pod_end, "netns", ns)
            ip("link", "set", host_end, "master", self.bridge, "up")
            ip("-n", ns, "link", "set", pod_end, "name", "eth0")
            ip("-n", ns, "addr", "add", f"{pod_ip}/{self.subnet.prefixlen}", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "route", "add", "default", "via", self.gateway)
        except BaseException:
            self.remove_pod(pod_ip)
            raise
        return ns

    def remove_pod(self, pod_ip: str) -> None:
        delete_netns(self.netns_name(pod_ip))
        ip("link", "delete", f"frw{self.run_id}v{pod_ip.rsplit('.', 1)[1]}", check=False)

    def destroy(self) -> None:
        _remove(self.netns_prefix, self.bridge)
        self.state_file.unlink(missing_ok=True)


def _remove(prefix: str, bridge: str) -> None:
    for name in _netns_names():
        if name.startswith(prefix):
            delete_netns(name)
    # A namespace whose processes were just killed goes a moment later, and its veth peers with it: delete the
    # host ends (named after the bridge's run id) now.
    run_links = bridge.removesuffix("br")
    for line in ip("-br", "link", "show", check=False).stdout.splitlines():
        link = line.split()[0].split("@")[0] if line.strip() else ""
        if link.startswith(run_links):
            ip("link", "delete", link, check=False)


def remove_leftovers() -> list[str]:
    """Remove the namespaces and bridges of runs whose process is gone (killed before it cleaned up)."""
    removed = []
    for state in STATE_DIR.glob("*.json") if STATE_DIR.is_dir() else ():
        try:
            data = json.loads(state.read_text())
        except (OSError, ValueError):
            state.unlink(missing_ok=True)
            continue
        if _alive(int(data.get("pid", 0))):
            continue
        _remove(str(data["prefix"]), str(data["bridge"]))
        state.unlink(missing_ok=True)
        removed.append(str(data["bridge"]))
    return removed
