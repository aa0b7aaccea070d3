"""The accelerator an annotation asks for: node affinity (or a nodeSelector) and tolerations for its device."""

from __future__ import annotations

from webhook.engine.pod import apply_accelerator
from webhook.mutation.steps.state import Attributed, Context, State, recorded


def apply_accelerator_request(context: Context, state: State) -> State:
    request = context.request
    accelerator, source = request.gpu_accelerator, request.accelerator_from
    if accelerator is None or not source:
        return state
    with Attributed(context, [source], ""):
        result = apply_accelerator(
            state.pod,
            accelerator,
            device_class=request.device_class,
            config=context.config,
            gpu_resource_name=context.gpu_name,
        )
    return recorded(context, state, [source], "", result, state.target)
