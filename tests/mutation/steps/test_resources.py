"""The resources step: requests and limits of the target container, and the GPU on the resource it belongs to."""

from __future__ import annotations

from webhook.engine.config import WebhookConfig
from webhook.mutation.plan import plan_mutation

P = "resources.flyte.org/"
CONFIG = WebhookConfig.from_mapping({})


def pod(annotations, containers=None):
    return {
        "metadata": {"name": "p", "namespace": "ns", "annotations": dict(annotations)},
        "spec": {"containers": containers or [{"name": "main", "image": "x"}]},
    }


def test_gpu_request_raised_to_equal_limit_with_a_warning():
    containers = [
        {"name": "main", "resources": {"requests": {"nvidia.com/gpu": "1"}, "limits": {"nvidia.com/gpu": "1"}}}
    ]
    plan = plan_mutation(pod({P + "limits": "gpu=2"}, containers), CONFIG)
    resources = plan.pod["spec"]["containers"][0]["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"] == "2"
    assert f"{P}limits: nvidia.com/gpu request raised to equal its limit (2)" in plan.warnings


def test_mixed_mig_strategy_moves_the_gpu_onto_the_slice_resource():
    config = WebhookConfig.from_mapping({"mig-strategy": "mixed"})
    plan = plan_mutation(pod({P + "limits": "gpu=1", P + "accelerator": "A100.partition_1g_5gb"}), config)
    resources = plan.pod["spec"]["containers"][0]["resources"]
    assert resources["limits"]["nvidia.com/mig-1g.5gb"] == "1"
    assert "nvidia.com/gpu" not in resources["limits"]
    terms = plan.pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    keys = [e["key"] for e in terms["nodeSelectorTerms"][0]["matchExpressions"]]
    assert keys == ["k8s.amazonaws.com/accelerator"]
