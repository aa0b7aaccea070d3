"""/dev/shm on the target container: as an annotation asks, or as a policy's `shared-memory` gives a pod that
asks nothing of it."""

from __future__ import annotations

from webhook.engine.pod import apply_shared_memory
from webhook.mutation.annotations import flytekit_shared_memory
from webhook.mutation.policies import policy_label
from webhook.mutation.steps.state import Attributed, Context, State, recorded
from webhook.mutation.steps.target import known_target, target_container


def apply_shared_memory_request(context: Context, state: State) -> State:
    shm, source = context.request.shared_memory, context.request.shared_memory_from
    if shm is None or not source:
        return state
    target = state.target or target_container(context.pod, context.request)
    with Attributed(context, [source], ""):
        result = apply_shared_memory(state.pod, target, shm)
    return recorded(context, state, [source], "", result, target)


def apply_policy_shared_memory(context: Context, state: State) -> State:
    """A policy's `shared-memory` (true, or a size) for a pod whose annotations do not mention it, on the target
    container when one is known; the summary then records it as if asked for."""
    policy = context.policy
    default = policy.shared_memory if policy is not None and context.request.shared_memory_from is None else None
    if policy is None or default is None or default is False:
        return state
    target = state.target or known_target(context.pod, context.request)
    if target is None:
        return state
    memory = flytekit_shared_memory(default if isinstance(default, str) else None)
    source = f"{policy_label(policy)} shared-memory"
    with Attributed(context, [], source):
        result = apply_shared_memory(state.pod, target, memory)
    return recorded(context, state, [], source, result, target, shared_memory=memory)
