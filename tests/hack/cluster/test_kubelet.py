"""The stand-in kubelet's pure parts: kubelet's atomic volume layout, probe counting, field refs, image names,
and the KWOK stages that leave the chart's pods to it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from hack.cluster import kwok
from hack.cluster.kubelet import Kubelet, Probe, atomic_write, field_value


def test_atomic_write_swaps_the_data_symlink_and_keeps_names_pointing_through_it(tmp_path: Path) -> None:
    assert atomic_write(tmp_path, {"config.yaml": b"a: 1\n", "sub/x": b"x"}, 0o644)
    first = (tmp_path / "..data").resolve()
    assert first.name.startswith("..") and first.parent == tmp_path
    assert os.readlink(tmp_path / "config.yaml") == "..data/config.yaml"
    assert os.readlink(tmp_path / "sub") == "..data/sub"
    assert (tmp_path / "sub" / "x").read_bytes() == b"x"

    assert not atomic_write(tmp_path, {"config.yaml": b"a: 1\n", "sub/x": b"x"}, 0o644)  # unchanged: no swap
    assert (tmp_path / "..data").resolve() == first

    assert atomic_write(tmp_path, {"config.yaml": b"a: 2\n"}, 0o600)
    second = (tmp_path / "..data").resolve()
    assert second != first and not first.exists()  # the old set is gone after the swap
    assert (tmp_path / "config.yaml").read_bytes() == b"a: 2\n"
    assert oct((second / "config.yaml").stat().st_mode & 0o777) == "0o600"
    assert not (tmp_path / "sub").exists() and not (tmp_path / "sub").is_symlink()  # a removed key goes


def test_probe_flips_only_after_its_thresholds() -> None:
    probe = Probe({"tcpSocket": {"port": 1}, "failureThreshold": 2, "successThreshold": 1}, {}, "readiness")
    assert probe.ok is False  # readiness starts false
    results = iter([True, False, False])
    probe.run_once = lambda pod_ip, pid: next(results)  # type: ignore[method-assign]
    assert probe.tick(0.0, "10.0.0.2", None) and probe.ok
    assert not probe.tick(1.0, "10.0.0.2", None) and probe.ok  # one failure of two
    assert probe.tick(2.0, "10.0.0.2", None) and not probe.ok
    live = Probe({"httpGet": {"port": "metrics"}, "initialDelaySeconds": 5}, {"metrics": 8080}, "liveness")
    assert live.ok is True  # liveness starts true
    live.reset(100.0)
    assert not live.due(104.0) and live.due(105.0)


def test_field_refs_and_image_repositories() -> None:
    pod = {"metadata": {"name": "p", "namespace": "ns", "uid": "u", "labels": {"a": "b"}}, "spec": {}}
    assert field_value(pod, "metadata.namespace") == "ns"
    assert field_value(pod, "metadata.labels['a']") == "b"
    with pytest.raises(RuntimeError, match="not supported"):
        field_value(pod, "spec.containers[0]")
    assert Kubelet._repository("ghcr.io/flyteorg/flyte-resources-webhook:0.1.0") == (
        "ghcr.io/flyteorg/flyte-resources-webhook"
    )
    assert Kubelet._repository("localhost:5000/kubectl@sha256:abc") == "localhost:5000/kubectl"
    assert Kubelet._repository("localhost:5000/kubectl") == "localhost:5000/kubectl"


def test_kwok_pod_stages_skip_the_chart_pods_and_node_stages_stay(tmp_path: Path) -> None:
    stages = tmp_path / "stages"
    for directory, name in kwok.STAGES:  # the shape of kwok's kustomize/stage files
        kind = "Pod" if directory.startswith("pod") else "Node"
        stage = {"kind": "Stage", "metadata": {"name": name}, "spec": {"resourceRef": {"kind": kind}}}
        (stages / directory).mkdir(parents=True, exist_ok=True)
        (stages / directory / name).write_text(yaml.safe_dump(stage))
    config = kwok.write_config(stages, tmp_path / "kwok.yaml", skip_pods_labelled=("app.kubernetes.io/name", "x"))
    docs = list(yaml.safe_load_all(config.read_text()))
    assert len(docs) == len(kwok.STAGES) + 1  # and ours, pod-complete-flyte
    skip = {"key": '.metadata.labels["app.kubernetes.io/name"]', "operator": "NotIn", "values": ["x"]}
    for doc in docs:
        expressions = (doc["spec"].get("selector") or {}).get("matchExpressions") or []
        assert (skip in expressions) == (doc["spec"]["resourceRef"]["kind"] == "Pod"), doc["metadata"]["name"]
    flyte = next(doc for doc in docs if doc["metadata"]["name"] == "pod-complete-flyte")
    assert {
        "key": ".metadata.ownerReferences.[].kind",
        "operator": "In",
        "values": ["flyteworkflow", "FlyteWorkflow"],
    } in (flyte["spec"]["selector"]["matchExpressions"])
    assert {"key": '.metadata.labels["e2e.flyte.org/kwok-complete"]', "operator": "In", "values": ["true"]} in (
        flyte["spec"]["selector"]["matchExpressions"]
    )
    plain = kwok.write_config(stages, tmp_path / "plain.yaml")
    assert "NotIn" not in plain.read_text()
