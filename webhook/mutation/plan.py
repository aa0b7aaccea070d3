"""Pod + config → JSON Patch ops + warnings: the one place that decides what the webhook changes.

The engine's functions return a new pod that shares every untouched branch with the input, so the ops are found
by walking only the branches that changed, without copying or diffing the whole pod (a Flyte task pod with
managedFields and env is several KB; kopf's generic patch path deep-copies and diffs all of it).
"""

from __future__ import annotations

import hashlib
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import orjson

from webhook.engine.config import Policy, WebhookConfig
from webhook.engine.excerpt import bounded
from webhook.engine.pod import (
    Change,
    PodSemanticsError,
    Result,
    apply_accelerator,
    apply_container_resources,
    apply_resource_tolerations,
    apply_shared_memory,
    effective_gpu_resource_name,
)
from webhook.engine.policies import Resolved, is_flyte_task_pod, matched_label_keys, pod_facts, resolve
from webhook.engine.quantity import InvalidQuantity
from webhook.mutation.annotations import (
    ACCELERATOR,
    APPLIED,
    CONTAINER,
    FLYTE_PRIMARY_CONTAINER_ANNOTATION,
    GPU_RESOURCE_KEY,
    LIMITS,
    REQUESTS,
    RESOURCES,
    InvalidAnnotation,
    ResourceRequest,
    flytekit_shared_memory,
    our_keys,
    read_annotations,
)
from webhook.mutation.fence import device_resource_names, fence_problem
from webhook.mutation.pod_shape import MalformedPod, shape_problem
from webhook.mutation.policies import (
    accelerator_problem,
    credit,
    gpu_problem,
    matched_note,
    own_accelerator_problem,
    policy_label,
)

Outcome = Literal["untouched", "mutated", "unchanged", "ignored"]
JsonPatchOp = dict[str, Any]


class Denied(Exception):
    """The pod must be refused; `message` is what the user sees (annotation, value, reason), at most ~1 KiB."""

    def __init__(self, message: str) -> None:
        message = bounded(message)
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Step:
    """What one annotation did: shown by `explain` and, note by note, as admission warnings."""

    annotation: str
    value: str
    notes: tuple[str, ...]
    container: str | None = None
    before: Mapping[str, Any] | None = field(default=None, repr=False)
    after: Mapping[str, Any] | None = field(default=None, repr=False)
    policy: Policy | None = field(default=None, repr=False)

    @property
    def changes(self) -> tuple[str, ...]:
        """`requests.cpu: 500m -> 1` lines for `explain`, `(policy <name>)` after a value the policy set;
        warnings carry only the adjustments."""
        if self.container is None or self.before is None or self.after is None:
            return ()
        return tuple(_describe_resource_changes(self.before, self.after, self.container, self.policy))


@dataclass(frozen=True)
class Plan:
    outcome: Outcome
    pod: Mapping[str, Any]
    ops: list[JsonPatchOp] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    steps: tuple[Step, ...] = ()
    container: str | None = None
    policy: str | None = None  # the name of the policy the pod was planned under


# Everything `plan_mutation` reads from a pod besides our annotations; see `plan_inputs`.
_CONTAINER_INPUTS = ("name", "resources", "volumeMounts")
_SPEC_INPUTS = ("volumes", "affinity", "tolerations", "nodeSelector")


@dataclass(frozen=True, slots=True)
class PlanInputs:
    """A pod's plan inputs, read once: `key` for a server's memory of answers, the rest for `plan_mutation`."""

    key: bytes
    found: tuple[dict[str, Any], bytes] | str = field(repr=False)


def read_plan_inputs(
    pod: Mapping[str, Any], config: WebhookConfig | str, namespace: str | None = None
) -> PlanInputs | None:
    """`plan_inputs` and what it read, so that a server that misses its memory plans without reading again."""
    found = _read_inputs(pod, config, namespace)
    if found is None:
        return None
    digest = hashlib.sha256()  # hardware-accelerated on most CPUs: ~2 ms for 3 MiB, where BLAKE2b takes ~6
    if isinstance(found, str):
        digest.update(b"problem\0" + found.encode("utf-8", "surrogatepass"))
    else:
        digest.update(b"inputs\0")
        digest.update(found[1])
    return PlanInputs(digest.digest(), found)


def plan_inputs(pod: Mapping[str, Any], config: WebhookConfig | str, namespace: str | None = None) -> bytes | None:
    """A 32-byte digest of the parts of `pod` that `plan_mutation` reads; None when the pod is not ours (no
    annotation of ours, and not a Flyte task pod under `flyte-task-pods`). `config` may be just the annotation
    prefix of a configuration without policies; with policies the labels they read and the namespace count too.

    Two pods with equal inputs get equal ops, warnings and outcome (a map task's pods differ only in names,
    env and args, which the plan never reads), so a server may reuse one plan's answer for the other. Present
    and absent keys stay distinct, and dict order is kept, so equal inputs mean equal ops to the letter. A pod
    whose inputs are malformed is keyed by its problem, which alone decides its answer. The key is a SHA-256
    digest so that it stays 32 bytes however large the pod.
    """
    inputs = read_plan_inputs(pod, config, namespace)
    return None if inputs is None else inputs.key


def _read_inputs(
    pod: Mapping[str, Any], config: WebhookConfig | str, namespace: str | None = None
) -> tuple[dict[str, Any], bytes] | str | None:
    """Our annotations and the serialized plan inputs; what is wrong with them; or None when none is ours.

    The one place that reads a pod's fields before the plan: `plan_inputs` and `plan_mutation` agree on it,
    so a malformed pod gets the same answer from both. Metadata or annotations that are not objects hold no
    annotation of ours.
    """
    prefix = config if isinstance(config, str) else config.annotation_prefix
    full = None if isinstance(config, str) else config  # policies and flyte-task-pods need the whole config
    metadata = pod.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, Mapping) else None
    if annotations is None and isinstance(metadata, Mapping):
        annotations = {}  # an unannotated pod: still ours when it is a Flyte task pod under flyte-task-pods
    if not isinstance(annotations, Mapping):
        return None
    ours = {k: v for k, v in annotations.items() if isinstance(k, str) and k.startswith(prefix)}
    wanted = full is not None and (full.policies or full.flyte_task_pods)
    facts = pod_facts(pod, namespace, full.namespace_template) if full is not None and wanted else None
    if not our_keys(ours, prefix):
        flyte_pod = full is not None and full.flyte_task_pods and facts is not None and is_flyte_task_pod(facts)
        if not flyte_pod and prefix + APPLIED not in ours:  # a summary we did not write is ours to remove
            return None
    primary = annotations.get(FLYTE_PRIMARY_CONTAINER_ANNOTATION)
    problem = shape_problem(pod, primary)
    if problem is not None:
        return problem
    spec = pod.get("spec") or {}
    containers = spec.get("containers")
    try:
        serialized = orjson.dumps(
            [
                ours,
                primary,
                None if containers is None else [{k: c[k] for k in _CONTAINER_INPUTS if k in c} for c in containers],
                {k: spec[k] for k in _SPEC_INPUTS if k in spec},
                *(() if facts is None or full is None else _policy_inputs(facts, full)),
            ]
        )
    except orjson.JSONEncodeError as exc:  # integers beyond 64 bits, lone surrogates, nesting past 255 levels
        return f"the pod's fields the webhook reads are not plain JSON ({exc})"
    return ours, serialized


def _policy_inputs(facts: Any, config: WebhookConfig) -> tuple[Any, ...]:
    """What policy matching reads: the labels it tests (not all: Flyte 2 labels each attempt) and the namespace."""
    labels = facts.labels
    return ({k: labels[k] for k in matched_label_keys(config) if k in labels}, facts.namespace)


def plan_mutation(
    pod: Mapping[str, Any], config: WebhookConfig, namespace: str | None = None, inputs: PlanInputs | None = None
) -> Plan:
    """Decide the patch for one pod. Raises `Denied` for bad input unless `on-invalid: ignore`, and for what a
    policy forbids. `namespace` is the review's, for policies that match one (a pod's own wins). `inputs`, when
    given, is `read_plan_inputs` of the same pod, config and namespace (read once per review)."""
    try:
        found = inputs.found if inputs is not None else _read_inputs(pod, config, namespace)
        if isinstance(found, str):
            raise MalformedPod(found)
        if found is None:
            return Plan("untouched", pod)
        # No annotation of ours: a Flyte task pod under `flyte-task-pods`, planned with no request of its own, or a
        # pod carrying only a summary we did not write.
        request = read_annotations(found[0], config.annotation_prefix)
        if request is None:
            if not (config.flyte_task_pods and is_flyte_task_pod(pod_facts(pod, namespace, config.namespace_template))):
                return _summary_removed(pod, config.annotation_prefix)
            request = ResourceRequest(config.annotation_prefix, {})
        resolved = (
            resolve(config, pod_facts(pod, namespace, config.namespace_template))
            if config.policies
            else Resolved(config)
        )
        return _plan(pod, request, resolved)
    except (InvalidAnnotation, MalformedPod) as exc:
        if config.on_invalid == "ignore":
            problem = fence_problem(pod, config, namespace)  # admitted as it stands: it must keep the fence
            if problem is not None:
                raise Denied(f"{problem} (the pod's annotations are invalid and ignored: {exc})") from None
            return Plan("ignored", pod, warnings=[bounded(f"{exc}; pod admitted unchanged (on-invalid: ignore)")])
        raise Denied(str(exc)) from None


def _plan(pod: Mapping[str, Any], request: ResourceRequest, resolved: Resolved) -> Plan:
    config, policy = resolved.config, resolved.policy
    prefix = request.prefix
    gpu_name = effective_gpu_resource_name(config, request.accelerator, request.gpu_resource_key)
    steps: list[Step] = []
    if policy is not None:
        steps.append(Step(policy_label(policy), "", (matched_note(policy),)))
        problem = accelerator_problem(policy, request.accelerator) if request.accelerator is not None else None
        problem = problem or own_accelerator_problem(policy, pod, config)
        if problem is not None:
            raise Denied(problem)
    current: Mapping[str, Any] = pod
    target: str | None = None
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    if request.container or FLYTE_PRIMARY_CONTAINER_ANNOTATION in annotations:
        # Flyte fails every task whose primary container is missing, whatever the task asks for; so do we, also
        # when only the accelerator (which needs no container) is asked for.
        _target_container(pod, request)

    def run(names: list[str], action: Callable[[Mapping[str, Any]], Result], source: str = "") -> None:
        """Apply one step; `names` are the annotations it comes from, `source` names a config-driven one."""
        nonlocal current
        annotation = " + ".join(prefix + name for name in names) or source
        value = "; ".join(request.given.get(name, "") for name in names)
        try:
            result = action(current)
        except (PodSemanticsError, InvalidQuantity) as exc:
            reason = credit([str(exc)], policy)[0]
            if not names:  # nothing the user wrote: a policy or the global config refuses the pod
                raise Denied(f"{annotation}: {reason}") from None
            raise InvalidAnnotation(annotation, value, reason) from None
        notes = _same_kinds(result.notes, credit(result.notes, policy))
        steps.append(Step(annotation, value, notes, target, current, result.pod, policy))
        current = result.pod

    resource_sources = [k for k in (RESOURCES, REQUESTS, LIMITS) if k in request.given]
    renames_gpu = gpu_name != config.gpu_resource_name
    # An unannotated Flyte task pod, or one a policy sets resources for, gets the (policy's) defaults and limits
    # on its task container even when no annotation names resources; a pod whose task container is unknown keeps
    # its resources (only annotations can name it).
    config_target = _config_target(pod, request, policy) if not (resource_sources or renames_gpu) else None
    if resource_sources or renames_gpu or config_target:
        target = config_target or _target_container(pod, request)
        sources = resource_sources or (
            [GPU_RESOURCE_KEY if request.gpu_resource_key else ACCELERATOR] if renames_gpu else []
        )
        name = target
        run(
            sources,
            lambda p: apply_container_resources(
                p,
                name,
                resources=request.resources,
                config=config,
                gpu_resource_name=gpu_name,
                accelerator=request.accelerator,
            ),
            policy_label(policy) if policy is not None else "config",
        )
    if request.gpu_accelerator is not None and request.accelerator_from:
        accelerator, device_class = request.gpu_accelerator, request.device_class
        run(
            [request.accelerator_from],
            lambda p: apply_accelerator(
                p, accelerator, device_class=device_class, config=config, gpu_resource_name=gpu_name
            ),
        )
    if request.shared_memory is not None and request.shared_memory_from:
        target = target or _target_container(pod, request)
        shm, name = request.shared_memory, target
        run([request.shared_memory_from], lambda p: apply_shared_memory(p, name, shm))
    default_shm = policy.shared_memory if policy is not None and request.shared_memory_from is None else None
    shm_target = (target or _known_target(pod, request)) if default_shm not in (None, False) else None
    if shm_target is not None:
        memory = flytekit_shared_memory(default_shm if isinstance(default_shm, str) else None)
        target = shm_target
        request = request.with_shared_memory(memory)
        run(
            [],
            lambda p: apply_shared_memory(p, shm_target, memory),
            f"{policy_label(policy)} shared-memory" if policy is not None else "config",
        )
    if policy is not None and policy.max_gpus is not None:
        problem = gpu_problem(policy, current, device_resource_names(config, gpu_name))
        if problem is not None:
            raise Denied(problem)
    tolerations = apply_resource_tolerations(current, config=config)
    if tolerations.notes:
        current = tolerations.pod
        steps.append(Step("config resource-tolerations", "", tolerations.notes))

    if not request.given and not diff(pod, current):  # an unannotated pod that needs nothing: no summary either
        if prefix + APPLIED in annotations:
            return replace(_summary_removed(pod, prefix), steps=tuple(steps), policy=policy.name if policy else None)
        return Plan("unchanged", pod, [], [], tuple(steps), target, policy.name if policy else None)
    resolved_resources = bool(resource_sources or renames_gpu or config_target)
    summary = _summary(current, request, target, gpu_name, resolved_resources, policy)
    current = _with_annotation(current, prefix + APPLIED, summary)
    ops = diff(pod, current)
    warnings = [
        bounded(f"{step.annotation}: {note}")
        for step in steps
        for note in step.notes
        if config.warnings == "all" or isinstance(note, Change)
    ]
    only_summary = all(op["path"].startswith("/metadata/annotations") for op in ops)
    outcome: Outcome = "unchanged" if not ops or only_summary else "mutated"
    return Plan(outcome, current, ops, warnings, tuple(steps), target, policy.name if policy else None)


def _same_kinds(original: tuple[str, ...], reworded: tuple[str, ...]) -> tuple[str, ...]:
    """`reworded` (the notes with a policy credited) with each note still a `Change` where the original was."""
    return tuple(Change(new) if isinstance(old, Change) else new for old, new in zip(original, reworded, strict=True))


def _describe_resource_changes(
    before: Mapping[str, Any], after: Mapping[str, Any], target: str, policy: Policy | None = None
) -> list[str]:
    """The target container's requests/limits that differ, one `side.name: old -> new` line each; a new value
    equal to what `policy` sets for that resource (a default request or a limit) says so."""

    def resources(pod: Mapping[str, Any]) -> Mapping[str, Any]:
        for container in (pod.get("spec") or {}).get("containers") or []:
            if container.get("name") == target:
                return container.get("resources") or {}
        return {}

    old, new = resources(before), resources(after)
    if old is new:
        return []
    lines = []
    for side in ("requests", "limits"):
        was, now = old.get(side) or {}, new.get(side) or {}
        for name in [*was, *(k for k in now if k not in was)]:
            if was.get(name) != now.get(name):
                by = _set_by(policy, side, name, now.get(name))
                lines.append(f"{side}.{name}: {was.get(name, '-')} -> {now.get(name, '-')}{by}")
    return lines


def _set_by(policy: Policy | None, side: str, name: str, value: Any) -> str:
    if policy is None or value is None:
        return ""
    limit = (policy.platform_limits or {}).get(name)
    default = (policy.default_requests or {}).get(name) if side == "requests" else None
    return f" ({policy_label(policy)})" if value in (limit, default) else ""


def _config_target(pod: Mapping[str, Any], request: ResourceRequest, policy: Policy | None) -> str | None:
    """The container a policy (or, for an unannotated Flyte pod, the global config) resolves resources of: the
    target container when the pod names it or has only one; None when no resources are to be resolved."""
    sets_resources = policy is not None and (
        policy.default_requests is not None or policy.platform_limits is not None or policy.on_limit_exceeded
    )
    if request.given and not sets_resources:
        return None
    return _known_target(pod, request)


def _known_target(pod: Mapping[str, Any], request: ResourceRequest) -> str | None:
    """The target container when the pod names it or has only one, else None."""
    containers = (pod.get("spec") or {}).get("containers") or []
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    if request.container or FLYTE_PRIMARY_CONTAINER_ANNOTATION in annotations or len(containers) == 1:
        return _target_container(pod, request)
    return None


def _target_container(pod: Mapping[str, Any], request: ResourceRequest) -> str:
    containers = (pod.get("spec") or {}).get("containers") or []
    names = [str(c.get("name")) for c in containers]
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    wanted = request.container or annotations.get(FLYTE_PRIMARY_CONTAINER_ANNOTATION)
    if wanted:
        if wanted not in names:
            key = request.prefix + CONTAINER if request.container else FLYTE_PRIMARY_CONTAINER_ANNOTATION
            raise InvalidAnnotation(key, wanted, f"no such container in the pod (containers: {', '.join(names)})")
        return wanted
    if len(names) == 1:
        return names[0]
    raise InvalidAnnotation(
        request.prefix + CONTAINER,
        "",
        f"the pod has {len(names)} containers ({', '.join(names)}) and no {FLYTE_PRIMARY_CONTAINER_ANNOTATION} "
        f"annotation: name the target container in {request.prefix}{CONTAINER}",
    )


def _summary(
    pod: Mapping[str, Any],
    request: ResourceRequest,
    target: str | None,
    gpu_name: str,
    resolved_resources: bool = False,
    policy: Policy | None = None,
) -> str:
    """A stable record of what the pod now carries from us (same input → same text, so re-runs add no op)."""
    summary: dict[str, Any] = {}
    if policy is not None:
        summary["policy"] = policy.name
    if target is not None:
        summary["container"] = target
    if target is not None and (request.touches_resources or request.gpu_resource_key or resolved_resources):
        for container in (pod.get("spec") or {}).get("containers") or []:
            if container.get("name") == target:
                resources = container.get("resources") or {}
                summary["requests"] = dict(resources.get("requests") or {})
                summary["limits"] = dict(resources.get("limits") or {})
    if request.accelerator is not None:
        accelerator = request.accelerator
        summary["accelerator"] = {
            k: v
            for k, v in (
                ("device", accelerator.device),
                ("partitionSize", accelerator.partition_size),
                ("unpartitioned", accelerator.is_unpartitioned or None),
                # flyteidl2's field, shown when it is not the default (a TPU, a Neuron device, ...)
                ("deviceClass", None if accelerator.device_class == "NVIDIA_GPU" else accelerator.device_class.value),
            )
            if v
        }
        summary["gpuResource"] = gpu_name
    if request.shared_memory is not None:
        summary["sharedMemory"] = {"mountPath": request.shared_memory.mount_path}
        if request.shared_memory.size_limit:
            summary["sharedMemory"]["sizeLimit"] = request.shared_memory.size_limit
    return orjson.dumps(summary, option=orjson.OPT_SORT_KEYS).decode()


def _summary_removed(pod: Mapping[str, Any], prefix: str) -> Plan:
    """Only the webhook writes the `applied` summary: one it did not write (a user's, a copied pod's) goes."""
    metadata = dict(pod.get("metadata") or {})
    metadata["annotations"] = {k: v for k, v in (metadata.get("annotations") or {}).items() if k != prefix + APPLIED}
    current = {**pod, "metadata": metadata}
    step = Step(prefix + APPLIED, "", ("removed: only the webhook writes this summary",))
    return Plan("mutated", current, diff(pod, current), [], (step,))


def _with_annotation(pod: Mapping[str, Any], key: str, value: str) -> dict[str, Any]:
    metadata = dict(pod.get("metadata") or {})
    metadata["annotations"] = {**(metadata.get("annotations") or {}), key: value}
    return {**pod, "metadata": metadata}


# --- JSON Patch -----------------------------------------------------------------------------------------------


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1") if "/" in key or "~" in key else key


_MISSING = object()


def diff(old: Any, new: Any, path: str = "") -> list[JsonPatchOp]:
    """Minimal RFC 6902 ops turning `old` into `new`; branches shared by identity are skipped without a look."""
    ops: list[JsonPatchOp] = []
    if old is not new:
        _diff(old, new, path, ops)
    return ops


def _diff(old: Any, new: Any, path: str, ops: list[JsonPatchOp]) -> None:
    if isinstance(old, dict) and isinstance(new, dict):  # JSON objects; a concrete class keeps the check cheap
        for key in old:
            if key not in new:
                ops.append({"op": "remove", "path": f"{path}/{_escape(str(key))}"})
        for key, value in new.items():
            before = old.get(key, _MISSING)
            if before is value or (type(value) is str and before == value):
                continue
            child = f"{path}/{_escape(str(key))}"
            if before is _MISSING:
                ops.append({"op": "add", "path": child, "value": value})
            elif isinstance(value, dict | list):
                _diff(before, value, child, ops)
            elif before != value or type(before) is not type(value):
                ops.append({"op": "replace", "path": child, "value": value})
    elif isinstance(old, list) and isinstance(new, list) and len(new) >= len(old):
        # Items appended to a long list (tolerations) leave the old ones shared: check that at C speed first.
        shared = all(map(operator.is_, old, new))
        for index, (before, after) in enumerate(() if shared else zip(old, new, strict=False)):
            if before is not after:
                _diff(before, after, f"{path}/{index}", ops)
        for index in range(len(old), len(new)):
            ops.append({"op": "add", "path": f"{path}/{index}", "value": new[index]})
    elif old != new or type(old) is not type(new):
        ops.append({"op": "replace", "path": path, "value": new})
