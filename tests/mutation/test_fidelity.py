"""Backend fidelity: where a differential run against Flyte's pod builder (flyteplugins `ToK8sPodSpec`) found us
doing what Flyte does not, we now do what Flyte does."""

from __future__ import annotations

from typing import Any

import pytest

from webhook.engine.config import WebhookConfig
from webhook.mutation.decision import Denied
from webhook.mutation.plan import plan_mutation

P = "resources.flyte.org/"
CONFIG = WebhookConfig.from_mapping({})


def pod(annotations: dict[str, str], resources: dict[str, Any], *names: str) -> dict[str, Any]:
    containers = [{"name": name, "image": "x", "resources": resources} for name in names or ("primary",)]
    return {"metadata": {"name": "t", "annotations": annotations}, "spec": {"containers": containers}}


def resources_of(result: Any, name: str = "primary") -> dict[str, Any]:
    return next(c for c in result.pod["spec"]["containers"] if c["name"] == name)["resources"]


# --- a zero in an annotation means "not overridden" -------------------------------------------------------------


def test_zero_limit_in_resources_keeps_the_containers_limit() -> None:
    """Flyte drops zero override entries: memory limit 16Gi stays, the 500M request is applied."""
    given = pod(
        {P + "resources": '{"cpu": "250m", "memory": ["500M", "0"]}'},
        {"requests": {"memory": "1Gi"}, "limits": {"memory": "16Gi"}},
    )
    result = plan_mutation(given, CONFIG)
    assert resources_of(result) == {
        "requests": {"memory": "500M", "cpu": "250m"},
        "limits": {"memory": "16Gi", "cpu": "250m"},
    }
    assert any("memory limit 0 ignored" in w for w in result.warnings)


def test_zero_memory_request_keeps_the_containers_memory() -> None:
    """`requests: cpu=4,mem=0` used to wipe the memory and fall back to the 1Gi default."""
    given = pod({P + "requests": "cpu=4,mem=0"}, {"requests": {"cpu": "1", "memory": "3Gi"}})
    result = plan_mutation(given, CONFIG)
    assert resources_of(result) == {"requests": {"cpu": "4", "memory": "3Gi"}, "limits": {"cpu": "4", "memory": "3Gi"}}


def test_zero_everywhere_changes_nothing_but_the_defaults() -> None:
    given = pod({P + "limits": "cpu=0"}, {"requests": {"cpu": "2", "memory": "2Gi"}, "limits": {"cpu": "3"}})
    result = plan_mutation(given, CONFIG)
    assert resources_of(result)["limits"]["cpu"] == "3"


# --- primary_container_name naming no container is an error for every annotated pod ----------------------------


@pytest.mark.parametrize(
    "annotations",
    [
        {P + "accelerator": "T4"},  # accelerator only: used to be admitted with affinity
        {P + "extended-resources": '{"gpuAccelerator": {"device": "nvidia-l4"}}'},
        {P + "gpu-resource-key": "amd.com/gpu"},
        {P + "resources": "cpu=1"},  # already an error before
    ],
)
def test_missing_primary_container_is_an_error(annotations: dict[str, str]) -> None:
    given = pod({"primary_container_name": "main", **annotations}, {"limits": {"nvidia.com/gpu": "1"}}, "side")
    with pytest.raises(Denied, match=r"primary_container_name='main': no such container in the pod \(containers: side"):
        plan_mutation(given, CONFIG)


def test_missing_container_annotation_target_is_an_error() -> None:
    given = pod({P + "container": "main", P + "accelerator": "T4"}, {"limits": {"nvidia.com/gpu": "1"}}, "side")
    with pytest.raises(Denied, match=r"resources.flyte.org/container='main': no such container"):
        plan_mutation(given, CONFIG)


def test_present_primary_container_with_accelerator_only_is_admitted() -> None:
    given = pod(
        {"primary_container_name": "side", P + "accelerator": "T4"}, {"limits": {"nvidia.com/gpu": "1"}}, "side"
    )
    result = plan_mutation(given, CONFIG)
    assert result.outcome == "patched"
    assert result.pod["spec"]["tolerations"][0]["value"] == "nvidia-tesla-t4"
