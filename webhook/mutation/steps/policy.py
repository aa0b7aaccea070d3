"""A policy's checks: the accelerators it allows, before anything is planned, and its `max-gpus`, after."""

from __future__ import annotations

from webhook.mutation.decision import Denied
from webhook.mutation.fence import device_resource_names
from webhook.mutation.policies import (
    accelerator_problem,
    gpu_problem,
    matched_note,
    own_accelerator_problem,
    policy_label,
)
from webhook.mutation.steps.state import Context, State, Step


def check_accelerators(context: Context, state: State) -> State:
    """The accelerator asked for, and any the pod selects itself, must be ones the policy allows; the record
    names the policy the pod matched."""
    policy, accelerator = context.policy, context.request.accelerator
    if policy is None:
        return state
    problem = accelerator_problem(policy, accelerator) if accelerator is not None else None
    problem = problem or own_accelerator_problem(policy, context.pod, context.config)
    if problem is not None:
        raise Denied(problem)
    return state.noted(Step(policy_label(policy), "", (matched_note(policy),)))


def check_max_gpus(context: Context, state: State) -> State:
    """The pod as planned asks for at most the policy's `max-gpus` devices, under every name a device counts."""
    policy = context.policy
    if policy is None or policy.max_gpus is None:
        return state
    problem = gpu_problem(policy, state.pod, device_resource_names(context.config, context.gpu_name))
    if problem is not None:
        raise Denied(problem)
    return state
