"""Pod + config → a `Decision` (JSON Patch ops + warnings, or a denial): the one place that decides what the
webhook changes.

`plan_mutation` reads the inputs once (`inputs`), folds the steps (`steps/`) over an immutable state, then adds
the summary (`summary`) and diffs the result against the pod as admitted (`patch`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from webhook.engine.config import WebhookConfig
from webhook.engine.excerpt import bounded
from webhook.engine.pod import Change, effective_gpu_resource_name
from webhook.engine.policies import Resolved, is_flyte_task_pod, pod_facts, resolve
from webhook.mutation.annotations import APPLIED, InvalidAnnotation, ResourceRequest, read_annotations
from webhook.mutation.decision import Decision, Denied, JsonPatchOp, Outcome, allowed, denied, ignored, patched
from webhook.mutation.fence import fence_problem
from webhook.mutation.inputs import PlanInputs, read_inputs
from webhook.mutation.patch import diff
from webhook.mutation.pod_shape import MalformedPod
from webhook.mutation.steps.accelerator import apply_accelerator_request
from webhook.mutation.steps.policy import check_accelerators, check_max_gpus
from webhook.mutation.steps.resources import apply_resources
from webhook.mutation.steps.shared_memory import apply_policy_shared_memory, apply_shared_memory_request
from webhook.mutation.steps.state import Context, State, Step
from webhook.mutation.steps.target import check_named_container
from webhook.mutation.steps.tolerations import apply_tolerations
from webhook.mutation.summary import summary, with_summary, without_summary

#: The steps in the order they apply; each sees the pod as the ones before it left it.
STEPS: tuple[Callable[[Context, State], State], ...] = (
    check_accelerators,
    check_named_container,
    apply_resources,
    apply_accelerator_request,
    apply_shared_memory_request,
    apply_policy_shared_memory,
    check_max_gpus,
    apply_tolerations,
)


@dataclass(frozen=True)
class Plan:
    """A decision and how it came about: the planned pod, the steps' records, the container and the policy."""

    decision: Decision
    pod: Mapping[str, Any]
    steps: tuple[Step, ...] = ()
    container: str | None = None
    policy: str | None = None  # the name of the policy the pod was planned under

    @property
    def outcome(self) -> Outcome:
        return self.decision.outcome

    @property
    def ops(self) -> list[JsonPatchOp]:
        return self.decision.ops

    @property
    def warnings(self) -> list[str]:
        return self.decision.warnings


def decide(
    pod: Mapping[str, Any], config: WebhookConfig, namespace: str | None = None, inputs: PlanInputs | None = None
) -> Decision:
    """`plan_mutation`'s decision, a denial included."""
    try:
        return plan_mutation(pod, config, namespace, inputs).decision
    except Denied as exc:
        return denied(exc.message)


def plan_mutation(
    pod: Mapping[str, Any], config: WebhookConfig, namespace: str | None = None, inputs: PlanInputs | None = None
) -> Plan:
    """Decide the patch for one pod. Raises `Denied` for bad input unless `on-invalid: ignore`, and for what a
    policy forbids. `namespace` is the review's, for policies that match one (a pod's own wins). `inputs`, when
    given, is `read_plan_inputs` of the same pod, config and namespace (read once per review)."""
    try:
        found = inputs.found if inputs is not None else read_inputs(pod, config, namespace)
        if isinstance(found, str):
            raise MalformedPod(found)
        if found is None:
            return Plan(allowed(), pod)
        request = _request(pod, found[0], config, namespace)
        if request is None:
            return _summary_removed(pod, config.annotation_prefix)
        resolved = (
            resolve(config, pod_facts(pod, namespace, config.namespace_template))
            if config.policies
            else Resolved(config)
        )
        return _plan(pod, request, resolved)
    except (InvalidAnnotation, MalformedPod) as exc:
        if config.on_invalid != "ignore":
            raise
        problem = fence_problem(pod, config, namespace)  # admitted as it stands: it must keep the fence
        if problem is not None:
            raise Denied(f"{problem} (the pod's annotations are invalid and ignored: {exc})") from None
        return Plan(ignored(f"{exc}; pod admitted unchanged (on-invalid: ignore)"), pod)


def _request(
    pod: Mapping[str, Any], ours: Mapping[str, object], config: WebhookConfig, namespace: str | None
) -> ResourceRequest | None:
    """What our annotations ask; with none of them, an empty request for a Flyte task pod under `flyte-task-pods`
    (planned with no request of its own), or None for a pod carrying only a summary we did not write."""
    request = read_annotations(ours, config.annotation_prefix)
    if request is not None:
        return request
    if config.flyte_task_pods and is_flyte_task_pod(pod_facts(pod, namespace, config.namespace_template)):
        return ResourceRequest(config.annotation_prefix, {})
    return None


def _plan(pod: Mapping[str, Any], request: ResourceRequest, resolved: Resolved) -> Plan:
    config, policy = resolved.config, resolved.policy
    gpu_name = effective_gpu_resource_name(config, request.accelerator, request.gpu_resource_key)
    context = Context(pod, request, config, policy, gpu_name)
    state = State(pod, shared_memory=request.shared_memory)
    for step in STEPS:
        state = step(context, state)
    return _finish(context, state)


def _finish(context: Context, state: State) -> Plan:
    """The planned pod with its summary, as ops against the pod as admitted, and the steps' warnings."""
    pod, request, policy = context.pod, context.request, context.policy
    name = policy.name if policy is not None else None
    if not request.given and not diff(pod, state.pod):  # an unannotated pod that needs nothing: no summary either
        if request.prefix + APPLIED in context.annotations:
            removed = _summary_removed(pod, request.prefix)
            return Plan(removed.decision, removed.pod, state.steps, policy=name)
        return Plan(allowed(), pod, state.steps, state.target, name)
    text = summary(
        state.pod,
        request,
        state.target,
        context.gpu_name,
        resolved_resources=state.resolved_resources,
        policy=policy,
        shared_memory=state.shared_memory,
    )
    planned = with_summary(state.pod, request.prefix, text)
    warnings = [
        bounded(f"{step.annotation}: {note}")
        for step in state.steps
        for note in step.notes
        if context.config.warnings == "all" or isinstance(note, Change)
    ]
    return Plan(patched(diff(pod, planned), warnings), planned, state.steps, state.target, name)


def _summary_removed(pod: Mapping[str, Any], prefix: str) -> Plan:
    """Only the webhook writes the `applied` summary: one it did not write (a user's, a copied pod's) goes."""
    current = without_summary(pod, prefix)
    step = Step(prefix + APPLIED, "", ("removed: only the webhook writes this summary",))
    return Plan(patched(diff(pod, current), []), current, (step,))
