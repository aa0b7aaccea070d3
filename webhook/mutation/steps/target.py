"""Which container the resources and shared memory go to: the one the pod names, or its only one."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from webhook.engine.config import Policy
from webhook.mutation.annotations import (
    CONTAINER,
    FLYTE_PRIMARY_CONTAINER_ANNOTATION,
    InvalidAnnotation,
    ResourceRequest,
)
from webhook.mutation.steps.state import Context, State


def check_named_container(context: Context, state: State) -> State:
    """Flyte fails every task whose primary container is missing, whatever the task asks for; so do we, also when
    only the accelerator (which needs no container) is asked for."""
    if context.request.container or FLYTE_PRIMARY_CONTAINER_ANNOTATION in context.annotations:
        target_container(context.pod, context.request)
    return state


def config_target(pod: Mapping[str, Any], request: ResourceRequest, policy: Policy | None) -> str | None:
    """The container a policy (or, for an unannotated Flyte pod, the global config) resolves resources of: the
    target container when the pod names it or has only one; None when no resources are to be resolved."""
    sets_resources = policy is not None and (
        policy.default_requests is not None or policy.platform_limits is not None or policy.on_limit_exceeded
    )
    if request.given and not sets_resources:
        return None
    return known_target(pod, request)


def known_target(pod: Mapping[str, Any], request: ResourceRequest) -> str | None:
    """The target container when the pod names it or has only one, else None."""
    containers = (pod.get("spec") or {}).get("containers") or []
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    if request.container or FLYTE_PRIMARY_CONTAINER_ANNOTATION in annotations or len(containers) == 1:
        return target_container(pod, request)
    return None


def target_container(pod: Mapping[str, Any], request: ResourceRequest) -> str:
    """The container named by our annotation or Flyte's, else the only one; `InvalidAnnotation` when there is no
    such container, or several and none named."""
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
