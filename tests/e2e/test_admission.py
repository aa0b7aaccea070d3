"""End to end: a real kube-apiserver calls the webhook; every assertion is on the pod as stored, read back with the
Python client.

Conventions of the local cluster (see conftest.py): no kubelet, so pods stay Pending; the apiserver's own
admission plugins add two `node.kubernetes.io/*` NoExecute tolerations to every pod (DefaultTolerationSeconds),
so toleration assertions look at the others only.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException
from kubernetes.utils import parse_quantity

from hack.cluster.chart import ANNOTATION_PREFIX, APPLIED_ANNOTATION
from hack.cluster.clusters import Cluster

from .conftest import ExtraWebhook

P = ANNOTATION_PREFIX
WEBHOOK_NAME = "flyte-resources.flyte.org"
DEVICE_LABEL = "k8s.amazonaws.com/accelerator"  # Flyte's default gpu-device-node-label (preset eks)
PARTITION_LABEL = "k8s.amazonaws.com/gpu-partition-size"  # Flyte's default gpu-partition-size-node-label
SHM_PATH = "/dev/shm"
VIA = ["kubectl", "python"]
Pod = dict[str, Any]


# --------------------------------------------------------------------------------------------- helpers


def make_pod(
    annotations: dict[str, str] | None = None,
    containers: list[dict[str, Any]] | None = None,
    *,
    name: str | None = None,
    labels: dict[str, str] | None = None,
    **spec: Any,
) -> Pod:
    metadata: dict[str, Any] = {"name": name or f"pod-{secrets.token_hex(4)}"}
    if annotations:
        metadata["annotations"] = dict(annotations)
    if labels:
        metadata["labels"] = dict(labels)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {"containers": containers or [container()], "restartPolicy": "Never", **spec},
    }


def container(name: str = "main", requests: dict[str, str] | None = None, limits: dict[str, str] | None = None):
    resources: dict[str, Any] = {}
    if requests:
        resources["requests"] = dict(requests)
    if limits:
        resources["limits"] = dict(limits)
    return {"name": name, "image": "ghcr.io/flyteorg/flytekit:py3.11-1.16.0", "resources": resources}


def read_pod(cluster: Cluster, namespace: str, name: str) -> Pod:
    api = cluster.api_client()
    from kubernetes import client

    stored = client.CoreV1Api(api).read_namespaced_pod(name, namespace)
    return dict(api.sanitize_for_serialization(stored))


def create(cluster: Cluster, via: str, namespace: str, pod: Pod) -> tuple[Pod, str]:
    """Create `pod` with `kubectl apply` or the Python client; return the stored pod and kubectl's stderr."""
    stderr = ""
    if via == "kubectl":
        result = cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(pod))
        assert result.returncode == 0, f"kubectl apply failed: {result.stderr}"
        stderr = result.stderr
    else:
        from kubernetes import client

        client.CoreV1Api(cluster.api_client()).create_namespaced_pod(namespace, pod)
    return read_pod(cluster, namespace, pod["metadata"]["name"]), stderr


def get_container(pod: Pod, name: str) -> dict[str, Any]:
    return next(c for c in pod["spec"]["containers"] if c["name"] == name)


def quantities(container_: dict[str, Any], side: str) -> dict[str, Decimal]:
    values = (container_.get("resources") or {}).get(side) or {}
    return {k: parse_quantity(v) for k, v in values.items()}


def q(values: dict[str, str]) -> dict[str, Decimal]:
    return {k: parse_quantity(v) for k, v in values.items()}


def node_terms(pod: Pod) -> list[list[dict[str, Any]]]:
    """Each required node selector term's matchExpressions (empty list without affinity)."""
    affinity = (pod["spec"].get("affinity") or {}).get("nodeAffinity") or {}
    required = affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or {}
    return [term.get("matchExpressions") or [] for term in required.get("nodeSelectorTerms") or []]


def our_tolerations(pod: Pod) -> list[dict[str, Any]]:
    """Tolerations except those the apiserver's admission plugins add: the two DefaultTolerationSeconds adds to
    every pod, and ExtendedResourceToleration's `<resource> Exists` for each extended resource the pod asks for."""
    requested = {name for c in pod["spec"]["containers"] for name in ((c.get("resources") or {}).get("limits") or {})}

    def by_apiserver(t: dict[str, Any]) -> bool:
        key = t.get("key") or ""
        return key.startswith("node.kubernetes.io/") or (key in requested and t.get("operator") == "Exists")

    return [t for t in pod["spec"].get("tolerations") or [] if not by_apiserver(t)]


def applied(pod: Pod) -> dict[str, Any]:
    annotations = pod["metadata"].get("annotations") or {}
    assert APPLIED_ANNOTATION in annotations, f"no {APPLIED_ANNOTATION} annotation: {annotations}"
    return dict(json.loads(annotations[APPLIED_ANNOTATION]))


def shm_volume(pod: Pod, container_name: str) -> dict[str, Any]:
    """The volume mounted at /dev/shm in the container (asserting there is exactly one)."""
    mounts = [m for m in get_container(pod, container_name).get("volumeMounts") or [] if m["mountPath"] == SHM_PATH]
    assert len(mounts) == 1, f"{container_name}: mounts {mounts}"
    volumes = [v for v in pod["spec"].get("volumes") or [] if v["name"] == mounts[0]["name"]]
    assert len(volumes) == 1, pod["spec"].get("volumes")
    return dict(volumes[0])


SA_TOKEN = "kube-api-access-"  # the ServiceAccount admission plugin's token volume (real clusters, kind)


def user_view(pod: Pod) -> dict[str, Any]:
    """What the webhook could change, with what the apiserver itself adds left out: for 'stored unchanged'."""
    annotations = {
        k: v
        for k, v in (pod["metadata"].get("annotations") or {}).items()
        if k != "kubectl.kubernetes.io/last-applied-configuration"
    }
    spec = pod["spec"]
    return {
        "annotations": annotations,
        "labels": pod["metadata"].get("labels") or {},
        "containers": [
            {
                "name": c["name"],
                "requests": quantities(c, "requests"),
                "limits": quantities(c, "limits"),
                "volumeMounts": [m for m in c.get("volumeMounts") or [] if not m["name"].startswith(SA_TOKEN)],
                "env": c.get("env") or [],
                "args": c.get("args") or [],
            }
            for c in spec["containers"]
        ],
        "initContainers": [c["name"] for c in spec.get("initContainers") or []],
        "volumes": [v for v in spec.get("volumes") or [] if not v["name"].startswith(SA_TOKEN)],
        "affinity": spec.get("affinity") or {},
        "nodeSelector": spec.get("nodeSelector") or {},
        "tolerations": our_tolerations(pod),
    }


def forget_on_real_cluster(cluster: Cluster, namespace: str, pod: Pod) -> None:
    """On --existing-cluster, pods outside the per-test namespaces would be scheduled and linger: delete them."""
    if not cluster.local:
        cluster.kubectl("delete", "pod", "-n", namespace, pod["metadata"]["name"], "--wait=false", "--ignore-not-found")


def total_reviews(cluster: Cluster) -> float:
    return sum(cluster.reviews().values())


# --------------------------------------------------------------------------------------------- the table


def _check_resources_json(pod: Pod) -> None:
    main = get_container(pod, "main")
    assert quantities(main, "requests") == q({"cpu": "1", "memory": "4Gi"})
    assert quantities(main, "limits") == q({"cpu": "2", "memory": "4Gi"})
    assert applied(pod)["container"] == "main"


def _check_resources_compact_gpu(pod: Pod) -> None:
    main = get_container(pod, "main")
    # a single value sets both request and limit; the pod's own cpu limit (1) is overridden by the pair
    assert quantities(main, "requests") == q({"cpu": "500m", "memory": "1Gi", "nvidia.com/gpu": "1"})
    assert quantities(main, "limits") == q({"cpu": "2", "memory": "1Gi", "nvidia.com/gpu": "1"})
    assert applied(pod)["limits"]["nvidia.com/gpu"] == "1"


def _check_requests_limits_merge(pod: Pod) -> None:
    main = get_container(pod, "main")
    # merged per key into what the container had (requests memory 1Gi, limits cpu 1)
    assert quantities(main, "requests") == q({"cpu": "250m", "memory": "1Gi"})
    assert quantities(main, "limits") == q({"cpu": "1", "memory": "2Gi"})


def _check_gpu_resource_key(pod: Pod) -> None:
    main = get_container(pod, "main")
    assert quantities(main, "limits")["amd.com/gpu"] == 2
    assert quantities(main, "requests")["amd.com/gpu"] == 2
    assert "nvidia.com/gpu" not in quantities(main, "limits")
    assert applied(pod)["limits"]["amd.com/gpu"] == "2"


def _check_accelerator_device(pod: Pod) -> None:
    assert node_terms(pod) == [[{"key": DEVICE_LABEL, "operator": "In", "values": ["nvidia-tesla-t4"]}]]
    assert our_tolerations(pod) == [
        {"key": DEVICE_LABEL, "operator": "Equal", "value": "nvidia-tesla-t4", "effect": "NoSchedule"}
    ]
    assert applied(pod)["accelerator"] == {"device": "nvidia-tesla-t4"}


def _check_mig_single(pod: Pod) -> None:
    assert quantities(get_container(pod, "main"), "limits")["nvidia.com/gpu"] == 1
    assert node_terms(pod) == [
        [
            {"key": DEVICE_LABEL, "operator": "In", "values": ["nvidia-tesla-a100"]},
            {"key": PARTITION_LABEL, "operator": "In", "values": ["1g.5gb"]},
        ]
    ]
    assert our_tolerations(pod) == [
        {"key": DEVICE_LABEL, "operator": "Equal", "value": "nvidia-tesla-a100", "effect": "NoSchedule"},
        {"key": PARTITION_LABEL, "operator": "Equal", "value": "1g.5gb", "effect": "NoSchedule"},
    ]


def _check_unpartitioned(pod: Pod) -> None:
    assert node_terms(pod) == [
        [
            {"key": DEVICE_LABEL, "operator": "In", "values": ["nvidia-tesla-a100"]},
            {"key": PARTITION_LABEL, "operator": "DoesNotExist"},
        ]
    ]
    assert [t["key"] for t in our_tolerations(pod)] == [DEVICE_LABEL]


def _check_shm_true(pod: Pod) -> None:
    volume = shm_volume(pod, "main")
    assert volume["emptyDir"]["medium"] == "Memory"
    assert parse_quantity(volume["emptyDir"].get("sizeLimit") or "0") == 0  # Flyte: "0" = sized by the kubelet
    assert applied(pod)["sharedMemory"] == {"mountPath": SHM_PATH}


def _check_shm_size(pod: Pod) -> None:
    volume = shm_volume(pod, "main")
    assert volume["emptyDir"] == {"medium": "Memory", "sizeLimit": "2Gi"}


def _check_extended_resources(pod: Pod) -> None:
    _check_mig_single(pod)
    assert shm_volume(pod, "main")["emptyDir"]["medium"] == "Memory"


def _check_container_annotation(pod: Pod) -> None:
    sidecar, main = get_container(pod, "sidecar"), get_container(pod, "main")
    assert quantities(sidecar, "requests") == q({"cpu": "3", "memory": "3Gi"})
    assert quantities(sidecar, "limits") == q({"cpu": "3", "memory": "3Gi"})
    assert quantities(main, "requests") == q({"cpu": "100m"})  # untouched
    assert not quantities(main, "limits")
    assert applied(pod)["container"] == "sidecar"


GPU_LIMIT = {"limits": {"nvidia.com/gpu": "1"}}
CASES: dict[str, tuple[dict[str, str], list[dict[str, Any]], Callable[[Pod], None]]] = {
    "resources-json": ({P + "resources": '{"cpu": ["1", "2"], "mem": "4Gi"}'}, [container()], _check_resources_json),
    "resources-compact-gpu": (
        {P + "resources": "cpu=500m:2,mem=1Gi,gpu=1"},
        [container(limits={"cpu": "1"})],
        _check_resources_compact_gpu,
    ),
    "requests-limits": (
        {P + "requests": "cpu=250m", P + "limits": "mem=2Gi"},
        [container(requests={"memory": "1Gi"}, limits={"cpu": "1"})],
        _check_requests_limits_merge,
    ),
    "gpu-resource-key": (
        {P + "resources": "gpu=2", P + "gpu-resource-key": "amd.com/gpu"},
        [container()],
        _check_gpu_resource_key,
    ),
    "accelerator-device": (
        {P + "accelerator": "nvidia-tesla-t4"},
        [container(**GPU_LIMIT)],
        _check_accelerator_device,
    ),
    "accelerator-mig-single": (
        {P + "accelerator": "A100.partition_1g_5gb", P + "resources": "gpu=1"},
        [container()],
        _check_mig_single,
    ),
    "accelerator-unpartitioned": (
        {P + "accelerator": "A100.unpartitioned"},
        [container(**GPU_LIMIT)],
        _check_unpartitioned,
    ),
    "shared-memory-true": ({P + "shared-memory": "true"}, [container()], _check_shm_true),
    "shared-memory-size": ({P + "shared-memory": "2Gi"}, [container()], _check_shm_size),
    "extended-resources": (
        {
            P + "extended-resources": json.dumps(
                {
                    "gpuAccelerator": {"device": "nvidia-tesla-a100", "partitionSize": "1g.5gb"},
                    "sharedMemory": {"mountName": "flyte-shared-memory", "mountPath": "/dev/shm"},
                }
            ),
            P + "resources": "gpu=1",
        },
        [container()],
        _check_extended_resources,
    ),
    "container": (
        {P + "container": "sidecar", P + "resources": "cpu=3,mem=3Gi"},
        [container(requests={"cpu": "100m"}), container("sidecar")],
        _check_container_annotation,
    ),
}


@pytest.mark.parametrize("via", VIA)
@pytest.mark.parametrize("case", list(CASES))
def test_annotation_table(cluster: Cluster, namespace: str, case: str, via: str) -> None:
    annotations, containers, check = CASES[case]
    pod, _ = create(cluster, via, namespace, make_pod(annotations, containers))
    check(pod)
    assert pod["metadata"]["annotations"][P + next(iter(annotations)).removeprefix(P)]  # ours are kept


def test_warnings_reach_kubectl(cluster: Cluster, namespace: str) -> None:
    """A request above the limit is lowered, and the AdmissionResponse warning is printed by kubectl."""
    pod = make_pod({P + "requests": "cpu=2"}, [container(limits={"cpu": "1"})])
    stored, stderr = create(cluster, "kubectl", namespace, pod)
    assert quantities(get_container(stored, "main"), "requests")["cpu"] == 1
    warnings = [line for line in stderr.splitlines() if line.startswith("Warning:")]
    assert any(P + "requests" in w and "lowered" in w for w in warnings), stderr


def test_warning_for_gpu_request_raised(cluster: Cluster, namespace: str) -> None:
    pod = make_pod({P + "limits": "gpu=2"}, [container(requests={"nvidia.com/gpu": "1"})])
    stored, stderr = create(cluster, "kubectl", namespace, pod)
    main = get_container(stored, "main")
    assert quantities(main, "requests")["nvidia.com/gpu"] == quantities(main, "limits")["nvidia.com/gpu"] == 2
    assert re.search(r"Warning: .*nvidia\.com/gpu request raised to equal its limit", stderr), stderr


def test_routine_fills_reach_applied_not_kubectl(cluster: Cluster, namespace: str) -> None:
    """`warnings: changes` (the default): a plain MIG request, whose limits, affinity and tolerations are all
    filled in, prints no warning; the `applied` annotation carries the result."""
    pod = make_pod({P + "resources": "gpu=1", P + "accelerator": "A100.partition_1g_5gb"}, [container()])
    stored, stderr = create(cluster, "kubectl", namespace, pod)
    assert "Warning:" not in stderr, stderr
    assert applied(stored)["accelerator"] == {"device": "nvidia-tesla-a100", "partitionSize": "1g.5gb"}


# --------------------------------------------------------------------------------------------- MIG, mixed strategy


@pytest.mark.parametrize("via", VIA)
def test_mig_mixed_strategy(cluster: Cluster, mixed_mig_webhook: ExtraWebhook, via: str) -> None:
    """Under `mig-strategy: mixed` the slice is the resource name (nvidia.com/mig-1g.5gb), not a node label."""
    pod = make_pod(
        {P + "accelerator": "A100.partition_1g_5gb", P + "resources": "gpu=1"},
        labels=mixed_mig_webhook.labels,
    )
    stored, _ = create(cluster, via, mixed_mig_webhook.namespace, pod)
    main = get_container(stored, "main")
    assert quantities(main, "limits")["nvidia.com/mig-1g.5gb"] == 1
    assert quantities(main, "requests")["nvidia.com/mig-1g.5gb"] == 1
    assert "nvidia.com/gpu" not in quantities(main, "limits")
    assert node_terms(stored) == [[{"key": DEVICE_LABEL, "operator": "In", "values": ["nvidia-tesla-a100"]}]]
    assert applied(stored)["gpuResource"] == "nvidia.com/mig-1g.5gb"


# --------------------------------------------------------------------------------------------- a Flyte task pod


def flyte_task_pod() -> Pod:
    """A pod as flytepropeller builds it for a pod task with a sidecar and an init container."""
    execution = f"a{secrets.token_hex(9)}"
    primary = "primary"
    env = [
        {"name": "FLYTE_INTERNAL_EXECUTION_ID", "value": execution},
        {"name": "FLYTE_INTERNAL_EXECUTION_PROJECT", "value": "flytesnacks"},
        {"name": "FLYTE_INTERNAL_EXECUTION_DOMAIN", "value": "development"},
        {"name": "FLYTE_INTERNAL_TASK_NAME", "value": "workflows.train.train_model"},
        {"name": "FLYTE_ATTEMPT_NUMBER", "value": "0"},
    ]
    args = ["pyflyte-fast-execute", "--additional-distribution", "s3://bucket/fast/abc.tar.gz", "--",
            "pyflyte-execute", "--inputs", f"s3://bucket/metadata/{execution}/n0/data/inputs.pb",
            "--resolver", "flytekit.core.python_auto_container.default_task_resolver",
            "--", "task-module", "workflows.train", "task-name", "train_model"]  # fmt: skip
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{execution}-n0-0",
            "labels": {
                "domain": "development",
                "execution-id": execution,
                "interruptible": "false",
                "node-id": "n0",
                "project": "flytesnacks",
                "shard-key": "21",
                "task-name": "workflows-train-train-model",
                "workflow-name": "workflows-train-wf",
            },
            "annotations": {
                "cluster-autoscaler.kubernetes.io/safe-to-evict": "false",
                "primary_container_name": primary,
                P + "resources": '{"cpu": ["2", "4"], "mem": "8Gi", "gpu": 1}',
                P + "accelerator": "nvidia-tesla-t4",
                P + "shared-memory": "true",
            },
        },
        "spec": {
            "restartPolicy": "Never",
            "initContainers": [{"name": "init-data", "image": "busybox", "args": ["true"]}],
            "containers": [
                {
                    "name": primary,
                    "image": "ghcr.io/flyteorg/flytekit:py3.11-1.16.0",
                    "args": args,
                    "env": env,
                    "resources": {
                        "requests": {"cpu": "500m", "memory": "1Gi"},
                        "limits": {"cpu": "500m", "memory": "1Gi"},
                    },
                    "terminationMessagePolicy": "FallbackToLogsOnError",
                },
                {
                    "name": "metrics-sidecar",
                    "image": "prom/statsd-exporter:v0.26.0",
                    "resources": {
                        "requests": {"cpu": "50m", "memory": "64Mi"},
                        "limits": {"cpu": "100m", "memory": "128Mi"},
                    },
                },
            ],
        },
    }


@pytest.mark.parametrize("via", VIA)
def test_flyte_task_pod_primary_only(cluster: Cluster, namespace: str, via: str) -> None:
    pod = flyte_task_pod()
    before = user_view(pod)
    stored, _ = create(cluster, via, namespace, pod)
    after = user_view(stored)

    primary = get_container(stored, "primary")
    assert quantities(primary, "requests") == q({"cpu": "2", "memory": "8Gi", "nvidia.com/gpu": "1"})
    assert quantities(primary, "limits") == q({"cpu": "4", "memory": "8Gi", "nvidia.com/gpu": "1"})
    assert shm_volume(stored, "primary")["emptyDir"]["medium"] == "Memory"
    assert node_terms(stored) == [[{"key": DEVICE_LABEL, "operator": "In", "values": ["nvidia-tesla-t4"]}]]
    assert applied(stored)["container"] == "primary"
    # the sidecar, the init container, env, args and labels are exactly as sent
    assert after["containers"][1] == before["containers"][1]
    assert after["containers"][0]["env"] == before["containers"][0]["env"]
    assert after["containers"][0]["args"] == before["containers"][0]["args"]
    assert after["initContainers"] == before["initContainers"]
    assert stored["spec"]["initContainers"][0].get("resources") in (None, {})
    assert after["labels"] == before["labels"]
    sidecar_mounts = get_container(stored, "metrics-sidecar").get("volumeMounts") or []
    assert not [m for m in sidecar_mounts if not m["name"].startswith(SA_TOKEN)]


# --------------------------------------------------------------------------------------------- not intercepted


def test_pods_without_our_annotations_never_reach_the_webhook(cluster: Cluster, namespace: str) -> None:
    """matchConditions keep them away from the webhook: its review counter does not move."""
    pods = [
        make_pod(),
        make_pod({"example.com/resources": "cpu=1", "resources.flyte.org.evil/x": "1"}),
        make_pod({"primary_container_name": "main"}, [container(requests={"cpu": "1"}, limits={"cpu": "2"})]),
    ]
    before = total_reviews(cluster)
    for index, pod in enumerate(pods):
        stored, stderr = create(cluster, VIA[index % 2], namespace, pod)
        assert user_view(stored) == user_view(pod), pod["metadata"]["name"]
        assert "Warning" not in stderr
    assert total_reviews(cluster) == before
    # control: the counter does move for a pod with our annotation
    create(cluster, "python", namespace, make_pod({P + "resources": "cpu=1"}))
    assert total_reviews(cluster) == before + 1


@pytest.mark.parametrize("where", ["kube-system", "webhook-namespace"])
def test_system_and_own_namespace_not_intercepted(cluster: Cluster, where: str) -> None:
    namespace = "kube-system" if where == "kube-system" else cluster.namespace
    before = total_reviews(cluster)
    pod = make_pod({P + "resources": "cpu=1,gpu=1", P + "shared-memory": "true"}, name=f"e2e-{secrets.token_hex(4)}")
    try:
        stored, _ = create(cluster, "kubectl", namespace, pod)
        assert user_view(stored) == user_view(pod)
        assert APPLIED_ANNOTATION not in stored["metadata"]["annotations"]
        assert total_reviews(cluster) == before
    finally:
        forget_on_real_cluster(cluster, namespace, pod)


# --------------------------------------------------------------------------------------------- denied


# annotations -> what the denial message must name (the annotation and its value)
BAD: dict[str, tuple[dict[str, str], list[str]]] = {
    "unparsable-resources": ({P + "resources": "cpu=banana"}, [P + "resources", "cpu=banana"]),
    "unknown-accelerator": ({P + "accelerator": "Z9000"}, [P + "accelerator", "Z9000"]),
    "unknown-container": ({P + "container": "nope", P + "resources": "cpu=1"}, [P + "container", "nope"]),
    "resources-with-requests": ({P + "resources": "cpu=1", P + "requests": "cpu=2"}, [P + "resources", P + "requests"]),
    "shm-conflict": (
        {P + "shared-memory": "true"},
        [P + "shared-memory", "/dev/shm is already mounted"],
    ),
}
BAD_CONTAINERS = {"shm-conflict": [{**container(), "volumeMounts": [{"name": "x", "mountPath": "/dev/shm"}]}]}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_annotations_denied_with_our_message(cluster: Cluster, namespace: str, case: str) -> None:
    annotations, expected = BAD[case]
    containers = BAD_CONTAINERS.get(case)
    pod = make_pod(annotations, containers, volumes=[{"name": "x", "emptyDir": {}}] if containers else [])
    denied_before = cluster.reviews().get("denied", 0.0)

    result = cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(pod))
    assert result.returncode != 0
    assert f'admission webhook "{WEBHOOK_NAME}" denied the request' in result.stderr, result.stderr
    for text in expected:
        assert text in result.stderr, result.stderr

    from kubernetes import client

    with pytest.raises(ApiException) as raised:
        client.CoreV1Api(cluster.api_client()).create_namespaced_pod(namespace, pod)
    assert raised.value.status == 400
    assert expected[0] in raised.value.body

    with pytest.raises(ApiException) as missing:
        read_pod(cluster, namespace, pod["metadata"]["name"])
    assert missing.value.status == 404
    assert cluster.reviews().get("denied", 0.0) == denied_before + 2


# --------------------------------------------------------------------------------------------- dry run


def test_server_dry_run_mutates_and_stores_nothing(cluster: Cluster, namespace: str) -> None:
    pod = make_pod({P + "resources": "cpu=1,mem=2Gi", P + "shared-memory": "true"})
    result = cluster.kubectl(
        "create", "--dry-run=server", "-n", namespace, "-o", "json", "-f", "-", input=json.dumps(pod)
    )
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert quantities(get_container(shown, "main"), "limits") == q({"cpu": "1", "memory": "2Gi"})
    assert shm_volume(shown, "main")["emptyDir"]["medium"] == "Memory"
    assert APPLIED_ANNOTATION in shown["metadata"]["annotations"]

    from kubernetes import client

    core = client.CoreV1Api(cluster.api_client())
    returned = core.create_namespaced_pod(namespace, pod, dry_run="All")
    assert APPLIED_ANNOTATION in returned.metadata.annotations

    with pytest.raises(ApiException) as missing:
        read_pod(cluster, namespace, pod["metadata"]["name"])
    assert missing.value.status == 404
    assert core.list_namespaced_pod(namespace).items == []


# --------------------------------------------------------------------------------------------- webhook down


def test_failure_policy_fail_denies_when_webhook_is_down(
    cluster: Cluster, namespace: str, dead_webhooks: dict[str, ExtraWebhook]
) -> None:
    hook = dead_webhooks["Fail"]
    pod = make_pod({P + "resources": "cpu=1"}, labels=hook.labels)
    result = cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(pod))
    assert result.returncode != 0
    assert f'failed calling webhook "{WEBHOOK_NAME}"' in result.stderr, result.stderr
    with pytest.raises(ApiException) as missing:
        read_pod(cluster, namespace, pod["metadata"]["name"])
    assert missing.value.status == 404


def _fail_open_count(cluster: Cluster) -> float:
    result = cluster.kubectl("get", "--raw", "/metrics")
    assert result.returncode == 0, result.stderr
    pattern = (
        r'^apiserver_admission_webhook_fail_open_count\{[^}]*name="' + re.escape(WEBHOOK_NAME) + r'"[^}]*\}\s+(\S+)'
    )
    return sum(float(v) for v in re.findall(pattern, result.stdout, re.MULTILINE))


def test_failure_policy_ignore_admits_unchanged_when_webhook_is_down(
    cluster: Cluster, dead_webhooks: dict[str, ExtraWebhook]
) -> None:
    """The Ignore copy is the only webhook for this pod (the main one excludes its own namespace): the pod is
    admitted exactly as sent, and the apiserver counts a fail-open call."""
    hook = dead_webhooks["Ignore"]
    fail_open_before = _fail_open_count(cluster)
    pod = make_pod({P + "resources": "cpu=1", P + "shared-memory": "true"}, labels=hook.labels)
    try:
        stored, _ = create(cluster, "kubectl", hook.namespace, pod)
        assert user_view(stored) == user_view(pod)
        assert _fail_open_count(cluster) >= fail_open_before + 1
    finally:
        forget_on_real_cluster(cluster, hook.namespace, pod)


def test_failure_policy_ignore_does_not_block_the_main_webhook(
    cluster: Cluster, namespace: str, dead_webhooks: dict[str, ExtraWebhook]
) -> None:
    hook = dead_webhooks["Ignore"]
    pod = make_pod({P + "resources": "cpu=1"}, labels=hook.labels)
    stored, _ = create(cluster, "python", namespace, pod)
    assert quantities(get_container(stored, "main"), "limits")["cpu"] == 1
    assert applied(stored)["container"] == "main"
