"""Real Flyte executions through the webhook: flytepropeller v1.16.8 runs FlyteWorkflow objects compiled from
flytekit 1.16 workflows (`examples/flyte/workflows.py`) on the local cluster, with the webhook in the path.

Each test starts one execution the way flyteadmin would hand it to propeller (`hack.cluster.flyte`), waits for its
final phase and asserts the task pod's resources, the node it landed on and the phase. KWOK completes the pods
(no task code runs); flyteadmin's part (execution annotations and labels, platform task resources) is applied to
the compiled object by the harness.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hack.cluster.chart import ANNOTATION_PREFIX, APPLIED_ANNOTATION, render_webhook_config
from hack.cluster.clusters import Cluster, LocalCluster
from hack.cluster.flyte import (
    FlyteTools,
    Propeller,
    error_message,
    execution_name,
    flyte_workflow,
    namespace_of,
    phase,
    serialize,
)
from hack.cluster.nodepools import POOL_LABEL
from hack.cluster.processes import MissingBinaries, tail

A = ANNOTATION_PREFIX
DEVICE_LABEL = "k8s.amazonaws.com/accelerator"  # the main webhook's preset is eks (the chart's default)
PARTITION_LABEL = "k8s.amazonaws.com/gpu-partition-size"


@dataclass
class Flyte:
    cluster: Cluster
    tools: FlyteTools
    propeller: Propeller
    closures: dict[str, Path]
    work_dir: Path
    namespace: str

    def execute(
        self,
        workflow: str,
        annotations: dict[str, str] | None = None,
        labels: dict[str, str] | None = None,
        namespace: str | None = None,
    ) -> Execution:
        name = execution_name()
        namespace = namespace or self.namespace
        wf = flyte_workflow(
            self.tools,
            self.closures[f"workflows.{workflow}"],
            name=name,
            namespace=namespace,
            annotations=annotations,
            labels=labels,
            work_dir=self.work_dir,
        )
        ended = self.propeller.run(wf)
        pods = self.cluster.kubectl("get", "pods", "-n", namespace, "-l", f"execution-id={name}", "-o", "json")
        assert pods.returncode == 0, pods.stderr
        return Execution(self, ended, json.loads(pods.stdout)["items"])


@dataclass
class Execution:
    flyte: Flyte
    wf: dict[str, Any]
    pods: list[dict[str, Any]]

    @property
    def phase(self) -> str:
        return phase(self.wf)

    def describe(self) -> str:
        """What to show when an assertion fails: the execution's status, its pods and propeller's log."""
        process = self.flyte.propeller.process
        log = tail(process.log_path, 30) if process else ""
        return (
            f"execution {self.wf['metadata']['name']}: phase {self.phase}, error {error_message(self.wf)!r}\n"
            f"pods: {json.dumps([_summary(p) for p in self.pods], indent=1)}\n--- flytepropeller log:\n{log}"
        )

    def only_pod(self) -> dict[str, Any]:
        assert len(self.pods) == 1, self.describe()
        return self.pods[0]

    def node_labels(self, pod: dict[str, Any]) -> dict[str, str]:
        node = pod["spec"].get("nodeName")
        assert node, f"pod {pod['metadata']['name']} was never scheduled\n{self.describe()}"
        got = self.flyte.cluster.kubectl("get", "node", node, "-o", "json")
        assert got.returncode == 0, got.stderr
        return dict(json.loads(got.stdout)["metadata"]["labels"])


def _summary(pod: dict[str, Any]) -> dict[str, Any]:
    spec = pod["spec"]
    return {
        "name": pod["metadata"]["name"],
        "phase": pod.get("status", {}).get("phase"),
        "labels": pod["metadata"].get("labels"),
        "owners": [o.get("kind") for o in pod["metadata"].get("ownerReferences") or []],
        "node": spec.get("nodeName"),
        "resources": [c.get("resources") for c in spec["containers"]],
        "affinity": spec.get("affinity"),
        "tolerations": spec.get("tolerations"),
    }


def _container(pod: dict[str, Any]) -> dict[str, Any]:
    containers = pod["spec"]["containers"]
    assert len(containers) == 1, containers
    return dict(containers[0])


def _both(**resources: str) -> dict[str, dict[str, str]]:
    """Container resources with the same requests and limits (`gpu` is `nvidia.com/gpu`)."""
    named = {("nvidia.com/gpu" if k == "gpu" else k): v for k, v in resources.items()}
    return {"requests": named, "limits": dict(named)}


def _shm_sizes(pod: dict[str, Any], container: dict[str, Any]) -> list[str | None]:
    """The size limits of the memory-backed volumes mounted at /dev/shm in `container`."""
    memory = {
        v["name"]: v["emptyDir"].get("sizeLimit")
        for v in pod["spec"].get("volumes") or []
        if (v.get("emptyDir") or {}).get("medium") == "Memory"
    }
    mounts = container.get("volumeMounts") or []
    return [memory[m["name"]] for m in mounts if m["mountPath"] == "/dev/shm" and m["name"] in memory]


def _required_terms(pod: dict[str, Any]) -> list[list[dict[str, Any]]]:
    affinity = (pod["spec"].get("affinity") or {}).get("nodeAffinity") or {}
    required = affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or {}
    return [list(term.get("matchExpressions") or []) for term in required.get("nodeSelectorTerms") or []]


def _assert_no_duplicated_requirements(pod: dict[str, Any]) -> None:
    for term in _required_terms(pod):
        keys = [e["key"] for e in term]
        assert len(keys) == len(set(keys)), f"a node selector term names a label twice: {term}"
    tolerations = [json.dumps(t, sort_keys=True) for t in pod["spec"].get("tolerations") or []]
    assert len(tolerations) == len(set(tolerations)), f"duplicated tolerations: {tolerations}"


@pytest.fixture(scope="module")
def flyte(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flyte]:
    if not isinstance(cluster, LocalCluster):
        pytest.skip("needs the local cluster's KWOK stage that completes Flyte pods (not on --existing-cluster)")
    try:
        tools = FlyteTools.locate()
    except MissingBinaries as exc:
        if os.environ.get("FRW_ALLOW_SKIP_E2E") == "1":
            pytest.skip(f"{exc} (skipped because FRW_ALLOW_SKIP_E2E=1)")
        pytest.fail(str(exc), pytrace=False)
    work_dir = tmp_path_factory.mktemp("flyte")
    closures = serialize(tools, work_dir / "serialized")
    namespace = namespace_of()
    cluster.ensure_namespace(namespace)
    propeller = Propeller(cluster.run_dir, tools, cluster.kubeconfig, cluster.kubectl)
    try:
        propeller.start()
        yield Flyte(cluster, tools, propeller, closures, work_dir, namespace)
    finally:
        propeller.stop()


def test_execution_annotations_accelerator_resources_and_shared_memory(flyte: Flyte) -> None:
    """`pyflyte run --remote --annotations ...`: flyteadmin puts the execution's annotations on the FlyteWorkflow,
    propeller copies them onto the task pod, the webhook turns them into resources, placement and /dev/shm."""
    run = flyte.execute(
        "plain_wf",
        annotations={
            A + "accelerator": "A100.partition_1g_5gb",
            A + "resources": "cpu=1,mem=2Gi,gpu=1",
            A + "shared-memory": "1Gi",
        },
    )
    assert run.phase == "Success", run.describe()
    pod = run.only_pod()
    assert APPLIED_ANNOTATION in pod["metadata"]["annotations"], run.describe()
    main = _container(pod)
    assert main["resources"] == _both(cpu="1", memory="2Gi", gpu="1"), run.describe()
    assert _shm_sizes(pod, main) == ["1Gi"], run.describe()
    labels = run.node_labels(pod)
    assert labels[POOL_LABEL] == "eks-a100-mig", run.describe()
    assert labels[PARTITION_LABEL] == "1g.5gb"


def test_task_pod_template_annotations(flyte: Flyte) -> None:
    """`@task(pod_template=PodTemplate(annotations=...))`: the annotations reach the pod through the task."""
    run = flyte.execute("pod_template_wf")
    assert run.phase == "Success", run.describe()
    pod = run.only_pod()
    assert _container(pod)["resources"] == _both(cpu="2", memory="4Gi", gpu="1"), run.describe()
    assert run.node_labels(pod)[POOL_LABEL] == "eks-a100-mig", run.describe()


def test_execution_annotation_beats_the_pod_templates_on_the_same_key(flyte: Flyte) -> None:
    """Propeller copies the execution's annotations after the pod template's: on the same key the execution wins,
    the template's other keys stay."""
    run = flyte.execute("pod_template_wf", annotations={A + "resources": "cpu=1,mem=1Gi,gpu=1"})
    assert run.phase == "Success", run.describe()
    pod = run.only_pod()
    assert pod["metadata"]["annotations"][A + "accelerator"] == "A100.partition_1g_5gb", run.describe()
    assert _container(pod)["resources"] == _both(cpu="1", memory="1Gi", gpu="1"), run.describe()
    assert run.node_labels(pod)[POOL_LABEL] == "eks-a100-mig", run.describe()


def test_with_overrides_pod_template(flyte: Flyte) -> None:
    """`task(...).with_overrides(pod_template=...)`: the node's pod template carries the annotations."""
    run = flyte.execute("overrides_wf")
    assert run.phase == "Success", run.describe()
    pod = run.only_pod()
    assert _container(pod)["resources"] == _both(cpu="3", memory="6Gi", gpu="2"), run.describe()
    assert run.node_labels(pod)[POOL_LABEL] == "eks-a100", run.describe()


def test_annotations_override_the_tasks_own_resources_and_accelerator(flyte: Flyte) -> None:
    """A task declaring Resources and accelerator=T4 (propeller writes requests, T4 affinity and toleration
    itself), run with execution annotations asking for an A100 MIG slice: the pod asks for the A100 only, once."""
    run = flyte.execute(
        "own_resources_wf",
        annotations={A + "accelerator": "A100.partition_1g_5gb", A + "resources": "cpu=4,mem=8Gi,gpu=1"},
    )
    assert run.phase == "Success", run.describe()
    pod = run.only_pod()
    assert _container(pod)["resources"] == _both(cpu="4", memory="8Gi", gpu="1"), run.describe()
    _assert_no_duplicated_requirements(pod)  # propeller's T4 toleration stays: it allows, it requires nothing
    terms = _required_terms(pod)
    assert terms, run.describe()
    for term in terms:
        values = {v for e in term for v in e.get("values") or []}
        assert "nvidia-tesla-t4" not in values, f"the T4 requirement survived: {term}"
        assert {"key": DEVICE_LABEL, "operator": "In", "values": ["nvidia-tesla-a100"]} in term, term
    labels = run.node_labels(pod)
    assert labels[POOL_LABEL] == "eks-a100-mig", run.describe()


def test_flyte2_spelling_on_a_flyte1_execution(flyte: Flyte) -> None:
    """Flyte 2's `flyte.Resources` spelling (`memory`, `gpu="A100:1"`, `shm`) in an execution annotation."""
    run = flyte.execute(
        "plain_wf",
        annotations={A + "resources": json.dumps({"cpu": "1", "memory": "3Gi", "gpu": "A100:1", "shm": "auto"})},
    )
    assert run.phase == "Success", run.describe()
    pod = run.only_pod()
    main = _container(pod)
    assert main["resources"] == _both(cpu="1", memory="3Gi", gpu="1"), run.describe()
    assert _shm_sizes(pod, main) == [None], run.describe()
    assert run.node_labels(pod)[DEVICE_LABEL] == "nvidia-tesla-a100", run.describe()


def test_map_task_subtasks_all_get_the_annotations(flyte: Flyte) -> None:
    """A map task (ArrayNode) over three inputs: each subtask pod is mutated and placed the same way."""
    run = flyte.execute("map_wf", annotations={A + "accelerator": "T4", A + "resources": "cpu=1,mem=1Gi,gpu=1"})
    assert run.phase == "Success", run.describe()
    assert len(run.pods) == 3, run.describe()
    for pod in run.pods:
        assert _container(pod)["resources"] == _both(cpu="1", memory="1Gi", gpu="1"), run.describe()
        assert run.node_labels(pod)[POOL_LABEL] == "eks-t4", run.describe()


def test_invalid_annotation_fails_the_execution_fast_with_the_webhooks_message(flyte: Flyte) -> None:
    """An unknown accelerator: the webhook denies the pod, propeller fails the execution at once with the
    webhook's message as the task's error."""
    started = time.monotonic()
    run = flyte.execute("plain_wf", annotations={A + "accelerator": "A999"})
    elapsed = time.monotonic() - started
    assert run.phase == "Failed", run.describe()
    message = error_message(run.wf)
    assert "A999" in message and "is not a known accelerator name" in message, run.describe()
    assert run.pods == [], run.describe()
    assert elapsed < 30, f"the execution took {elapsed:.0f} s to fail"


POLICY = {
    "name": "limited",
    "match": {"project": "flytesnacks", "domain": "development"},
    "platform-limits": {"cpu": "2", "nvidia.com/gpu": "1"},
    "allowed-accelerators": ["T4"],
    "shared-memory": "1Gi",
}


@pytest.fixture(scope="module")
def policy_webhook(flyte: Flyte) -> Iterator[dict[str, str]]:
    """A second webhook whose config has the policy above, behind a copy of the chart's MWC that selects only pods
    with the returned labels; the executions run in the main webhook's own namespace (which the main MWC
    excludes), so exactly one webhook sees their pods."""
    cluster = flyte.cluster
    assert isinstance(cluster, LocalCluster)
    labels = {"e2e.flyte.org/webhook": "flyte-policy"}
    # Project and domain labels count only in the namespace Flyte maps them to: here every project's executions
    # run in that one namespace (a constant flyteadmin namespace_mapping template).
    values = {"config": {"policies": [POLICY], "namespace-template": cluster.namespace}}
    config = render_webhook_config(cluster.helm_bin, values=values, work_dir=cluster.run_dir)
    process, mwc = cluster.start_selected_webhook("flyte-policy", config, labels)
    yield labels
    cluster.remove_webhook_configuration(mwc["metadata"]["name"])
    process.stop()


def test_policy_limited_project(flyte: Flyte, policy_webhook: dict[str, str]) -> None:
    """A policy for the execution's project and domain (matched by the labels propeller writes): its limit clamps
    the annotated cpu, its /dev/shm is added; an accelerator it does not allow fails the execution with the
    policy's message."""
    namespace = flyte.cluster.namespace
    run = flyte.execute(
        "plain_wf",
        annotations={A + "accelerator": "T4", A + "resources": "cpu=4,mem=2Gi,gpu=1"},
        labels=policy_webhook,
        namespace=namespace,
    )
    assert run.phase == "Success", run.describe()
    pod = run.only_pod()
    main = _container(pod)
    assert main["resources"] == _both(cpu="2", memory="2Gi", gpu="1"), run.describe()
    assert _shm_sizes(pod, main) == ["1Gi"], run.describe()
    assert '"policy":"limited"' in pod["metadata"]["annotations"][APPLIED_ANNOTATION], run.describe()
    assert run.node_labels(pod)[POOL_LABEL] == "eks-t4", run.describe()

    denied = flyte.execute(
        "plain_wf", annotations={A + "accelerator": "A100"}, labels=policy_webhook, namespace=namespace
    )
    assert denied.phase == "Failed", denied.describe()
    message = error_message(denied.wf)
    assert "policy limited" in message and "is not allowed" in message, denied.describe()
    assert denied.pods == [], denied.describe()
