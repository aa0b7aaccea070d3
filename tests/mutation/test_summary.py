"""The `applied` summary: what a planned pod carries from the webhook; one the webhook did not write goes."""

from __future__ import annotations

import json

from webhook.engine.config import WebhookConfig
from webhook.mutation.plan import plan_mutation

P = "resources.flyte.org/"
CONFIG = WebhookConfig.from_mapping({})


def pod(annotations):
    return {
        "metadata": {"name": "p", "namespace": "ns", "annotations": dict(annotations)},
        "spec": {"containers": [{"name": "main", "image": "x"}]},
    }


def test_applied_summary_records_the_result():
    plan = plan_mutation(
        pod({P + "resources": "cpu=1,gpu=1", P + "accelerator": "T4", P + "shared-memory": "1Gi"}), CONFIG
    )
    summary = json.loads(plan.pod["metadata"]["annotations"][P + "applied"])
    assert summary == {
        "container": "main",
        "requests": {"cpu": "1", "nvidia.com/gpu": "1", "memory": "1Gi"},
        "limits": {"cpu": "1", "nvidia.com/gpu": "1", "memory": "1Gi"},
        "accelerator": {"device": "nvidia-tesla-t4"},
        "gpuResource": "nvidia.com/gpu",
        "sharedMemory": {"mountPath": "/dev/shm", "sizeLimit": "1Gi"},
    }


def test_a_summary_the_webhook_did_not_write_is_removed() -> None:
    from webhook.engine.config import WebhookConfig as Config
    from webhook.mutation.plan import plan_mutation as plan

    forged = '{"requests":{"nvidia.com/gpu":"8"}}'
    pod = {
        "metadata": {"name": "p", "annotations": {"resources.flyte.org/applied": forged, "other": "x"}},
        "spec": {"containers": [{"name": "main"}]},
    }
    result = plan(pod, Config.from_mapping({}))
    assert result.ops == [{"op": "remove", "path": "/metadata/annotations/resources.flyte.org~1applied"}]
    assert result.pod["metadata"]["annotations"] == {"other": "x"}
    # on a pod we mutate, ours replaces it
    pod["metadata"]["annotations"]["resources.flyte.org/resources"] = "cpu=1"
    summary = plan(pod, Config.from_mapping({})).pod["metadata"]["annotations"]["resources.flyte.org/applied"]
    assert summary != forged and '"requests":{"cpu":"1"' in summary
