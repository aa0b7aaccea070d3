"""Requests and limits of the target container: from the annotations, or from a policy's (or, for an
unannotated Flyte task pod, the global config's) defaults and limits; and the GPU count moved to the resource
name the accelerator or `gpu-resource-key` gives."""

from __future__ import annotations

from webhook.engine.pod import apply_container_resources
from webhook.mutation.annotations import ACCELERATOR, GPU_RESOURCE_KEY, LIMITS, REQUESTS, RESOURCES
from webhook.mutation.policies import policy_label
from webhook.mutation.steps.state import Attributed, Context, State, recorded
from webhook.mutation.steps.target import config_target, target_container


def apply_resources(context: Context, state: State) -> State:
    """An unannotated Flyte task pod, or one a policy sets resources for, gets the (policy's) defaults and limits
    on its task container even when no annotation names resources; a pod whose task container is unknown keeps
    its resources (only annotations can name it)."""
    request, policy = context.request, context.policy
    sources = [k for k in (RESOURCES, REQUESTS, LIMITS) if k in request.given]
    renames_gpu = context.gpu_name != context.config.gpu_resource_name
    from_config = config_target(context.pod, request, policy) if not (sources or renames_gpu) else None
    if not (sources or renames_gpu or from_config):
        return state
    target = from_config or target_container(context.pod, request)
    names = sources or ([GPU_RESOURCE_KEY if request.gpu_resource_key else ACCELERATOR] if renames_gpu else [])
    source = policy_label(policy) if policy is not None else "config"
    with Attributed(context, names, source):
        result = apply_container_resources(
            state.pod,
            target,
            resources=request.resources,
            config=context.config,
            gpu_resource_name=context.gpu_name,
            accelerator=request.accelerator,
        )
    return recorded(context, state, names, source, result, target, resolved_resources=True)
