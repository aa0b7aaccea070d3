"""What a policy and the platform limits guarantee for a pod the webhook does not change: an in-place resize
(`pods/resize`), and a pod admitted as it stands under `on-invalid: ignore`. A junk annotation, or a resize after
admission, must not be the way around `max-gpus`, `allowed-accelerators` or `platform-limits`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from webhook.engine.catalog import DeviceClass
from webhook.engine.config import WebhookConfig
from webhook.engine.policies import Resolved, pod_facts, resolve
from webhook.mutation.decision import Decision, allowed, denied
from webhook.mutation.policies import gpu_problem, limit_problem, own_accelerator_problem


def device_resource_names(config: WebhookConfig, *also: str) -> tuple[str, ...]:
    """Every resource name a device is counted under in `config` (and `also`): what `max-gpus` sums."""
    names = (*also, config.gpu_resource_name, *(config.device_class_config(c).resource_name for c in DeviceClass))
    return tuple(dict.fromkeys(name for name in names if name))


def fence_problem(pod: Mapping[str, Any], config: WebhookConfig, namespace: str | None = None) -> str | None:
    """Why the pod, as it stands, breaks its policy (allowed accelerators it selects itself, `max-gpus`) or a
    platform limit of its configuration; None when it keeps them."""
    facts = pod_facts(pod, namespace, config.namespace_template)
    resolved = resolve(config, facts) if config.policies else Resolved(config)
    policy = resolved.policy
    if policy is not None:
        problem = own_accelerator_problem(policy, pod, resolved.config) or gpu_problem(
            policy, pod, device_resource_names(resolved.config)
        )
        if problem is not None:
            return problem
    return limit_problem(pod, resolved.config, policy)


def decide_resize(pod: Mapping[str, Any], config: WebhookConfig, namespace: str | None = None) -> Decision:
    """An in-place resize changes the resources after admission: allowed while the pod keeps its fence."""
    problem = fence_problem(pod, config, namespace)
    return allowed() if problem is None else denied(f"in-place resize refused: {problem}")
