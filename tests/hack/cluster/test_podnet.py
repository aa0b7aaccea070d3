"""The pod network's preconditions and bookkeeping, without touching the host's network."""

from __future__ import annotations

import ipaddress
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from hack.cluster import podnet


def test_not_root_or_no_ip_is_refused_saying_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(podnet.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(podnet.shutil, "which", lambda name: None)
    with pytest.raises(podnet.PodNetworkUnavailable) as caught:
        podnet.require_root()
    message = str(caught.value)
    assert "not running as root (euid 1000)" in message and "iproute2" in message


def test_addresses_and_names_fit_the_kernel_limits() -> None:
    net = podnet.PodNetwork("ab12", ipaddress.ip_network("10.250.7.0/24"))
    assert net.gateway == "10.250.7.1"
    assert net.pod_ips[0] == "10.250.7.2" and net.pod_ips[-1] == "10.250.7.254"
    assert net.netns_name("10.250.7.254") == "frw-ab12-254"
    assert len(net.bridge) <= 15 and len(f"frw{net.run_id}v254") <= 15  # IFNAMSIZ - 1


def test_leftovers_of_a_dead_run_are_removed_and_live_runs_kept(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(podnet, "STATE_DIR", tmp_path)
    (tmp_path / "dead.json").write_text(
        json.dumps({"pid": 2**22 + 12345, "bridge": "frwdeadbr", "prefix": "frw-dead-"})
    )
    (tmp_path / "live.json").write_text(json.dumps({"pid": podnet.os.getpid(), "bridge": "frwlivebr", "prefix": "x"}))
    calls: list[tuple[str, ...]] = []

    def fake_ip(*args: str, check: bool = True) -> Any:
        calls.append(args)
        out = ""
        if args == ("netns", "list"):
            out = "frw-dead-2 (id: 0)\nfrw-live-2 (id: 1)\n"
        elif args[:2] == ("-br", "link"):
            out = "frwdeadv2@if3  UP  ...\nfrwdeadbr  UP ...\neth0  UP ...\n"
        return subprocess.CompletedProcess(["ip", *args], 0, out, "")

    monkeypatch.setattr(podnet, "ip", fake_ip)
    assert podnet.remove_leftovers() == ["frwdeadbr"]
    assert ("netns", "delete", "frw-dead-2") in calls
    assert ("link", "delete", "frwdeadv2") in calls and ("link", "delete", "frwdeadbr") in calls
    assert not any("frw-live-2" in c or "eth0" in c for c in calls)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["live.json"]
