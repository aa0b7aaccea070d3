"""The config's `resource-tolerations`: a toleration for each extended resource the pod now asks for."""

from __future__ import annotations

from webhook.engine.pod import apply_resource_tolerations
from webhook.mutation.steps.state import Context, State, Step


def apply_tolerations(context: Context, state: State) -> State:
    result = apply_resource_tolerations(state.pod, config=context.config)
    if not result.notes:
        return state
    return state.noted(Step("config resource-tolerations", "", result.notes), result.pod)
