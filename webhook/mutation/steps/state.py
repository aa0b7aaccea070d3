"""What every step reads (`Context`, fixed for one pod) and passes on (`State`, a new one per step), and the
`Step` record of what one annotation did."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from flyteidl.core import tasks_pb2

from webhook.engine.config import Policy, WebhookConfig
from webhook.engine.errors import Refusal
from webhook.engine.pod import Change, Result
from webhook.mutation.annotations import InvalidAnnotation, ResourceRequest
from webhook.mutation.decision import Denied
from webhook.mutation.policies import credit, policy_label


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
        return tuple(_resource_changes(self.before, self.after, self.container, self.policy))


@dataclass(frozen=True, slots=True)
class Context:
    """One pod's fixed inputs: the pod as admitted, what its annotations ask, and the configuration it is planned
    with (a policy's, merged) and the GPU resource name that gives."""

    pod: Mapping[str, Any]
    request: ResourceRequest
    config: WebhookConfig
    policy: Policy | None
    gpu_name: str

    @property
    def annotations(self) -> Mapping[str, Any]:
        return (self.pod.get("metadata") or {}).get("annotations") or {}


@dataclass(frozen=True, slots=True)
class State:
    """The plan so far: the pod as the steps left it, the container they changed, and what the summary records
    besides the pod's resources."""

    pod: Mapping[str, Any]
    target: str | None = None
    steps: tuple[Step, ...] = ()
    shared_memory: tasks_pb2.SharedMemory | None = None
    resolved_resources: bool = False

    def noted(self, step: Step, pod: Mapping[str, Any] | None = None) -> State:
        """This state with `step` recorded and, when given, the pod it made."""
        pod = self.pod if pod is None else pod
        return State(pod, self.target, (*self.steps, step), self.shared_memory, self.resolved_resources)


def label(context: Context, names: list[str], source: str) -> tuple[str, str]:
    """The annotation(s) a step comes from and their values; `source` names a step no annotation asked for."""
    prefix, given = context.request.prefix, context.request.given
    return " + ".join(prefix + name for name in names) or source, "; ".join(given.get(name, "") for name in names)


class Attributed:
    """An engine refusal inside, told as the annotation's (which `on-invalid: ignore` may admit) or, when no
    annotation asked for the step, as the pod's denial by the policy or the global config."""

    __slots__ = ("context", "names", "source")

    def __init__(self, context: Context, names: list[str], source: str) -> None:
        self.context, self.names, self.source = context, names, source

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if not isinstance(exc, Refusal):
            return  # none, or a bug of ours: it goes on
        annotation, value = label(self.context, self.names, self.source)
        reason = credit([str(exc)], self.context.policy)[0]
        if not self.names:
            raise Denied(f"{annotation}: {reason}") from None
        raise InvalidAnnotation(annotation, value, reason) from None


def recorded(
    context: Context,
    state: State,
    names: list[str],
    source: str,
    result: Result,
    target: str | None,
    *,
    resolved_resources: bool = False,
    shared_memory: tasks_pb2.SharedMemory | None = None,
) -> State:
    """The state after a step that changed `target`: its pod and its record (notes crediting the policy keep their
    kind); `resolved_resources` and `shared_memory` say what the summary records besides the resources."""
    annotation, value = label(context, names, source)
    policy = context.policy
    notes = tuple(
        Change(new) if isinstance(old, Change) else new
        for old, new in zip(result.notes, credit(result.notes, policy), strict=True)
    )
    step = Step(annotation, value, notes, target, state.pod, result.pod, policy)
    return State(
        result.pod,
        target,
        (*state.steps, step),
        shared_memory or state.shared_memory,
        resolved_resources or state.resolved_resources,
    )


def _resource_changes(
    before: Mapping[str, Any], after: Mapping[str, Any], target: str, policy: Policy | None = None
) -> list[str]:
    """The target container's requests/limits that differ, one `side.name: old -> new` line each; a new value
    equal to what `policy` sets for that resource (a default request or a limit) says so."""
    old, new = _container_resources(before, target), _container_resources(after, target)
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


def _container_resources(pod: Mapping[str, Any], target: str) -> Mapping[str, Any]:
    for container in (pod.get("spec") or {}).get("containers") or []:
        if container.get("name") == target:
            return container.get("resources") or {}
    return {}


def _set_by(policy: Policy | None, side: str, name: str, value: Any) -> str:
    if policy is None or value is None:
        return ""
    limit = (policy.platform_limits or {}).get(name)
    default = (policy.default_requests or {}).get(name) if side == "requests" else None
    return f" ({policy_label(policy)})" if value in (limit, default) else ""
