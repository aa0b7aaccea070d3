"""Policies and `flyte-task-pods` through a real kube-apiserver: the chart's matchConditions send unannotated
Flyte task pods to the webhook and keep every other unannotated pod away from it (its review counter stays still).

A webhook process of its own runs the chart's config with `flyte-task-pods: true` and two policies, behind a copy
of the chart's MWC rendered with the same config and an objectSelector, in the main webhook's own namespace
(which the main MWC excludes), so exactly one webhook sees these pods.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from hack.cluster.chart import ANNOTATION_PREFIX, APPLIED_ANNOTATION, WEBHOOK_NAMESPACE, render_webhook_config
from hack.cluster.clusters import Cluster, LocalCluster, dry_run_create, probe_pod, wait_for_mutation
from hack.cluster.processes import HarnessError
from hack.cluster.webhook import parse_reviews

from .conftest import SELECTOR_LABEL, ExtraWebhook

SELECTOR = {SELECTOR_LABEL: "policies"}
CONFIG: dict[str, Any] = {
    "preset": "eks",
    "flyte-task-pods": True,
    # The pods run in the webhook's own namespace (the main MWC excludes it): every project's namespace here.
    "namespace-template": WEBHOOK_NAMESPACE,
    "platform-limits": {"cpu": "8"},
    "policies": [
        {
            "name": "development",
            "match": {"domain": "development"},
            "platform-limits": {"cpu": "2"},
            "default-requests": {"memory": "1Gi"},
            "allowed-accelerators": ["T4", "L4"],
            "max-gpus": 2,
        },
        {"name": "ml-training", "match": {"project": "ml", "domain": "production"}, "shared-memory": "2Gi"},
    ],
}


@pytest.fixture(scope="module")
def policy_webhook(cluster: Cluster) -> Iterator[ExtraWebhook]:
    if not isinstance(cluster, LocalCluster):
        pytest.skip("needs a second local webhook process (not available with --existing-cluster)")
    values = {"config": CONFIG}
    config = render_webhook_config(cluster.helm_bin, values=values, work_dir=cluster.run_dir)
    assert config == CONFIG, config
    process = cluster.start_extra_webhook("webhook-policies", config)
    mwc = cluster.add_webhook_configuration(
        release="frw-e2e-policies",
        base_url=process.url,
        values={**values, "webhook": {"objectSelector": {"matchLabels": SELECTOR}}},
    )
    assert "task-name" in mwc["webhooks"][0]["matchConditions"][0]["expression"]
    probe = probe_pod("frw-policies-probe")
    probe["metadata"]["labels"] = SELECTOR
    wait_for_mutation(cluster, namespace=cluster.namespace, pod=probe, alive=process.process.exited)  # type: ignore[union-attr]
    yield ExtraWebhook(mwc["metadata"]["name"], SELECTOR, cluster.namespace, process)
    cluster.remove_webhook_configuration(mwc["metadata"]["name"])
    process.stop()


def task_pod(labels: dict[str, str], annotations: dict[str, str] | None = None, **resources: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": f"task-{secrets.token_hex(4)}", "labels": {**SELECTOR, **labels}}
    if annotations:
        metadata["annotations"] = annotations
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "primary", "image": "ghcr.io/flyteorg/flytekit:py3.11", "resources": resources}],
        },
    }


def flyte1(project: str, domain: str) -> dict[str, str]:
    """The labels flytepropeller puts on a task pod."""
    return {
        "project": project,
        "domain": domain,
        "workflow-name": "workflows-train-wf",
        "task-name": "workflows-train-train-model",
        "execution-id": f"a{secrets.token_hex(9)}",
        "node-id": "n0",
        "interruptible": "false",
    }


def reviews(hook: ExtraWebhook) -> float:
    assert hook.process is not None
    return sum(parse_reviews(hook.process.metrics_text()).values())


def applied(pod: dict[str, Any]) -> dict[str, Any]:
    return json.loads(pod["metadata"]["annotations"][APPLIED_ANNOTATION])


def test_an_unannotated_flyte_task_pod_gets_its_policy(cluster: Cluster, policy_webhook: ExtraWebhook) -> None:
    before = reviews(policy_webhook)
    stored = dry_run_create(
        cluster, policy_webhook.namespace, task_pod(flyte1("web", "development"), limits={"cpu": "6"})
    )
    resources = stored["spec"]["containers"][0]["resources"]
    assert resources["limits"] == {"cpu": "2", "memory": "1Gi"}
    assert resources["requests"] == {"cpu": "2", "memory": "1Gi"}
    assert applied(stored)["policy"] == "development"
    assert reviews(policy_webhook) == before + 1


def test_a_flyte2_task_pod_is_sent_by_its_managed_label(cluster: Cluster, policy_webhook: ExtraWebhook) -> None:
    labels = {"flyte.org/managed": "true", "project": "ml", "domain": "production", "run": "r1", "action": "a0"}
    stored = dry_run_create(cluster, policy_webhook.namespace, task_pod(labels))
    assert applied(stored)["policy"] == "ml-training"
    volumes = stored["spec"]["volumes"]
    assert {"name": "flyte-shared-memory", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}} in volumes


def test_unannotated_pods_that_are_not_flyte_task_pods_never_reach_the_webhook(
    cluster: Cluster, policy_webhook: ExtraWebhook
) -> None:
    before = reviews(policy_webhook)
    for labels in ({}, {"project": "ml", "domain": "development"}, {"flyte.org/managed": "false"}, {"app": "web"}):
        stored = dry_run_create(cluster, policy_webhook.namespace, task_pod(labels, limits={"cpu": "6"}))
        assert APPLIED_ANNOTATION not in (stored["metadata"].get("annotations") or {})
        assert stored["spec"]["containers"][0]["resources"]["limits"] == {"cpu": "6"}
    assert reviews(policy_webhook) == before


def test_a_disallowed_accelerator_is_denied_naming_the_policy(cluster: Cluster, policy_webhook: ExtraWebhook) -> None:
    pod = task_pod(flyte1("web", "development"), {ANNOTATION_PREFIX + "accelerator": "A100"})
    with pytest.raises(HarnessError) as caught:
        dry_run_create(cluster, policy_webhook.namespace, pod)
    message = str(caught.value)
    assert "denied the request" in message
    assert "policy development (domain=development): accelerator 'A100' (nvidia-tesla-a100) is not allowed" in message


def test_a_flyte_pod_outside_every_policy_gets_the_global_limits(
    cluster: Cluster, policy_webhook: ExtraWebhook
) -> None:
    stored = dry_run_create(cluster, policy_webhook.namespace, task_pod(flyte1("web", "qa"), requests={"cpu": "12"}))
    assert stored["spec"]["containers"][0]["resources"]["requests"]["cpu"] == "8"
    assert "policy" not in applied(stored)


def _metric(hook: ExtraWebhook, result: str) -> float:
    assert hook.process is not None
    text = hook.process.metrics_text()
    for line in text.splitlines():
        if line.startswith(f'flyte_resources_webhook_config_reloads_total{{result="{result}"}}'):
            return float(line.split()[-1])
    raise AssertionError(f"no reloads metric for {result} in:\n{text}")


def test_a_config_change_takes_effect_without_a_restart(cluster: Cluster, policy_webhook: ExtraWebhook) -> None:
    """The running process's config file becomes a kubelet-style ConfigMap volume (`..data` symlink swaps): a
    valid version serves the next pods, an invalid one is refused and counted while the last valid one serves."""
    import os
    import time

    import yaml

    from hack.cluster.processes import wait_until

    assert policy_webhook.process is not None
    config_file = policy_webhook.process._config_file
    volume = config_file.parent / "policies-configmap"
    volume.mkdir(exist_ok=True)

    def publish(version: int, content: dict[str, Any] | str) -> float:
        directory = volume / f"..2026_12_01_v{version}"
        directory.mkdir()
        (directory / "config.yaml").write_text(content if isinstance(content, str) else yaml.safe_dump(content))
        link = volume / "..data_tmp"
        link.symlink_to(directory.name)
        os.replace(link, volume / "..data")
        if not config_file.is_symlink():
            tmp = config_file.with_suffix(".tmp")
            tmp.symlink_to(volume / "..data" / "config.yaml")
            os.replace(tmp, config_file)
        return time.monotonic()

    def dev_cpu_limit() -> str:
        stored = dry_run_create(
            cluster, policy_webhook.namespace, task_pod(flyte1("web", "development"), limits={"cpu": "6"})
        )
        return str(stored["spec"]["containers"][0]["resources"]["limits"]["cpu"])

    tighter = {
        **CONFIG,
        "policies": [{**CONFIG["policies"][0], "platform-limits": {"cpu": "1"}}, CONFIG["policies"][1]],
    }
    applied_before = _metric(policy_webhook, "applied")
    try:
        published = publish(1, tighter)
        wait_until(lambda: dev_cpu_limit() == "1", timeout=30, what="the reloaded policy", interval=0.1)
        print(f"\nreload took effect {time.monotonic() - published:.2f} s after the ..data swap")
        assert _metric(policy_webhook, "applied") == applied_before + 1

        invalid_before = _metric(policy_webhook, "invalid")
        publish(2, "policies: [{name: broken, match: {}}]\n")
        wait_until(lambda: _metric(policy_webhook, "invalid") == invalid_before + 1, timeout=30, what="the refusal")
        assert dev_cpu_limit() == "1"  # the last valid version still serves
    finally:
        publish(3, CONFIG)
        wait_until(lambda: dev_cpu_limit() == "2", timeout=30, what="the original config back", interval=0.1)


# --------------------------------------------------------- the stall and the walk-arounds, through the apiserver


def _denied(cluster: Cluster, hook: ExtraWebhook, pod: dict[str, Any]) -> str:
    with pytest.raises(HarnessError) as caught:
        dry_run_create(cluster, hook.namespace, pod)
    assert "denied the request" in str(caught.value)
    return str(caught.value)


def test_a_pod_with_a_huge_gpu_count_is_denied_while_other_creates_keep_succeeding(
    cluster: Cluster, policy_webhook: ExtraWebhook
) -> None:
    """Four pods asking for 1e999999 GPUs once stalled every replica for 30 s each (then code 500)."""
    from concurrent.futures import ThreadPoolExecutor

    def hostile(i: int) -> str:
        resources = {"limits": {"amd.com/gpu" if i % 2 else "nvidia.com/gpu": "1e999999"}}
        pod = task_pod(flyte1("web", "development"), **resources)
        return _denied(cluster, policy_webhook, pod)

    def ordinary(_: int) -> dict[str, Any]:
        return dry_run_create(cluster, policy_webhook.namespace, task_pod(flyte1("web", "development")))

    with ThreadPoolExecutor(8) as pool:
        denials = list(pool.map(hostile, range(4)))
        stored = list(pool.map(ordinary, range(24)))
    assert all("more than 1000000 GPUs" in message for message in denials), denials
    assert all(applied(pod)["policy"] == "development" for pod in stored)


def test_init_containers_count_against_max_gpus(cluster: Cluster, policy_webhook: ExtraWebhook) -> None:
    pod = task_pod(flyte1("web", "development"))
    pod["spec"]["initContainers"] = [
        {"name": "warmup", "image": "busybox", "resources": {"limits": {"nvidia.com/gpu": "8"}}}
    ]
    assert "asks for 8 GPUs (nvidia.com/gpu); at most 2 allowed" in _denied(cluster, policy_webhook, pod)


def test_a_pods_own_node_selector_for_a_forbidden_accelerator_is_denied(
    cluster: Cluster, policy_webhook: ExtraWebhook
) -> None:
    pod = task_pod(flyte1("web", "development"))
    pod["spec"]["nodeSelector"] = {"k8s.amazonaws.com/accelerator": "nvidia-tesla-a100"}
    pod["spec"]["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    message = _denied(cluster, policy_webhook, pod)
    assert "the pod's own nodeSelector asks for accelerator 'nvidia-tesla-a100'" in message


def test_an_in_place_resize_above_the_limit_is_denied(cluster: Cluster, policy_webhook: ExtraWebhook) -> None:
    pod = task_pod(flyte1("web", "development"), {ANNOTATION_PREFIX + "resources": "cpu=1"})
    pod["spec"]["schedulingGates"] = [{"name": "e2e.flyte.org/hold"}]  # admission only: no node needed
    created = cluster.kubectl("create", "-n", policy_webhook.namespace, "-f", "-", input=json.dumps(pod))
    assert created.returncode == 0, created.stderr
    name = pod["metadata"]["name"]
    try:
        patch = {
            "spec": {
                "containers": [{"name": "primary", "resources": {"requests": {"cpu": "6"}, "limits": {"cpu": "6"}}}]
            }
        }
        resized = cluster.kubectl(
            "patch", "pod", name, "-n", policy_webhook.namespace, "--subresource", "resize", "-p", json.dumps(patch)
        )
        assert resized.returncode != 0
        assert (
            "in-place resize refused" in resized.stderr and "above the limit of policy development 2" in resized.stderr
        )
    finally:
        cluster.kubectl("delete", "pod", name, "-n", policy_webhook.namespace, "--wait=false")
