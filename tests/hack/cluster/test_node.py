"""The real node's configuration, checked without starting it (the e2e live-chart tests start it)."""

from __future__ import annotations

import ipaddress
import tomllib
from pathlib import Path

import pytest

from hack.cluster import node


def _network() -> node.NodeNetwork:
    return node.NodeNetwork("abc123", ipaddress.ip_network("10.250.7.0/24"), ipaddress.ip_network("10.251.7.0/24"))


def test_the_apiserver_address_is_the_kubernetes_service_clusterip_and_off_the_pod_subnet() -> None:
    net = _network()
    assert net.gateway == "10.250.7.1"
    # The apiserver gives the `kubernetes` Service the first address of the Service range.
    assert net.api_address == "10.251.7.1"
    assert ipaddress.ip_address(net.api_address) not in net.pod_subnet


def test_cni_config_is_a_bridge_on_the_nodes_subnet_without_masquerade(tmp_path: Path) -> None:
    config = _network().cni_config(tmp_path / "ipam")
    (plugin,) = config["plugins"]
    assert plugin["type"] == "bridge" and plugin["bridge"] == "frwabc123" and plugin["isGateway"] is True
    assert plugin["ipMasq"] is False
    assert plugin["ipam"]["type"] == "host-local"
    assert plugin["ipam"]["ranges"] == [[{"subnet": "10.250.7.0/24", "gateway": "10.250.7.1"}]]
    assert plugin["ipam"]["dataDir"] == str(tmp_path / "ipam")


@pytest.mark.parametrize("restrict", [True, False])
def test_containerd_config_is_valid_toml_with_the_quirk_only_when_asked(restrict: bool) -> None:
    text = node.CONTAINERD_CONFIG.format(
        root="/r", state="/s", socket="/s/c.sock", cni_bin="/usr/lib/cni", cni_conf="/c", runc="/usr/sbin/runc",
        restrict_oom=str(restrict).lower(), sandbox=node.PAUSE_IMAGE,
    )  # fmt: skip
    config = tomllib.loads(text)
    assert config["version"] == 3
    runtime = config["plugins"]["io.containerd.cri.v1.runtime"]
    assert runtime["restrict_oom_score_adj"] is restrict
    assert runtime["cni"] == {"bin_dirs": ["/usr/lib/cni"], "conf_dir": "/c", "max_conf_num": 1}
    assert runtime["containerd"]["runtimes"]["runc"]["options"] == {"BinaryName": "/usr/sbin/runc",
                                                                      "SystemdCgroup": False}  # fmt: skip
    assert config["plugins"]["io.containerd.cri.v1.images"]["pinned_images"]["sandbox"] == node.PAUSE_IMAGE


def test_cap_sys_resource_is_read_from_the_bounding_set(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    status = tmp_path / "status"
    real_path = node.Path

    def fake_path(p: str) -> Path:
        return status if p == "/proc/self/status" else real_path(p)

    monkeypatch.setattr(node, "Path", fake_path)
    status.write_text("Name:\tx\nCapBnd:\t000001fffeffffff\n")  # bit 24 cleared, as in some sandboxes
    assert node.cap_sys_resource_missing()
    status.write_text("Name:\tx\nCapBnd:\t000001ffffffffff\n")  # a normal host
    assert not node.cap_sys_resource_missing()
