"""The accelerator step: where the device's pods go (node affinity, or a nodeSelector)."""

from __future__ import annotations

from webhook.engine.config import WebhookConfig
from webhook.mutation.plan import plan_mutation

P = "resources.flyte.org/"


def pod(annotations):
    return {
        "metadata": {"name": "p", "namespace": "ns", "annotations": dict(annotations)},
        "spec": {"containers": [{"name": "main", "image": "x"}]},
    }


def test_node_selector_placement():
    config = WebhookConfig.from_mapping({"accelerator-placement": "nodeSelector", "preset": "gke"})
    plan = plan_mutation(pod({P + "limits": "gpu=1", P + "accelerator": "A100.partition_1g_5gb"}), config)
    assert plan.pod["spec"]["nodeSelector"] == {
        "cloud.google.com/gke-accelerator": "nvidia-tesla-a100",
        "cloud.google.com/gke-gpu-partition-size": "1g.5gb",
    }
    assert "affinity" not in plan.pod["spec"]
