"""The parts of a pod the plan reads, checked for shape before anything reads them.

The API server sends a mutating webhook its decoded, typed pod, so a real review always passes; but the HTTPS
endpoint also answers whatever is posted to it, and a pod whose `containers` is a string or whose limits hold
`"abc"` must be a short denial naming the field, not an exception. Only the fields the plan reads are checked
(`inputs.plan_inputs` lists them); `null` is accepted wherever the engine treats it as absent. Objects are
checked as `dict`, which is what JSON decodes to (and faster to check than `Mapping`: a pod may have
thousands of tolerations).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from webhook.engine.excerpt import bounded, excerpt, shown
from webhook.engine.kubenames import is_dns_label
from webhook.engine.quantity import InvalidQuantity, parse_quantity
from webhook.mutation.decision import Denied

_Check = Callable[[Mapping[str, Any], str], "str | None"]


class MalformedPod(Denied):
    """A pod field the plan reads has the wrong type or an invalid value; the message names the field."""

    def __init__(self, problem: str) -> None:
        super().__init__(bounded(problem))


def shape_problem(pod: Mapping[str, Any], primary_container: object) -> str | None:
    """What is wrong with the plan's inputs of `pod` (the first problem found), or None."""
    if primary_container is not None and not isinstance(primary_container, str):
        return _wrong("metadata.annotations.primary_container_name", primary_container, "a string")
    if "spec" not in pod:
        return None
    spec = pod["spec"]
    if not isinstance(spec, dict):
        return _wrong("spec", spec, "an object")
    return (
        _each(spec, "containers", "spec", _container)
        or _each(spec, "volumes", "spec", _volume)
        or _each(spec, "tolerations", "spec", None)
        or _strings(spec, "nodeSelector", "spec")
        or _affinity(spec)
    )


def _wrong(path: str, value: object, expected: str) -> str:
    return f"pod field {path}: expected {expected}, got {_kind(value)}"


def _kind(value: object) -> str:
    kinds = {str: "a string", list: "a list", dict: "an object", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else kinds.get(type(value), type(value).__name__)


def _object(parent: Mapping[str, Any], key: str, path: str) -> tuple[Mapping[str, Any], str | None]:
    """`parent[key]` as an object (empty when absent or null), or the problem."""
    value = parent.get(key)
    if value is None:
        return {}, None
    if not isinstance(value, dict):
        return {}, _wrong(f"{path}.{key}", value, "an object")
    return value, None


def _each(parent: Mapping[str, Any], key: str, path: str, check: _Check | None) -> str | None:
    """`parent[key]` must be a list of objects, each passing `check(item, item_path)` when given."""
    items = parent.get(key)
    if items is None:
        return None
    if not isinstance(items, list):
        return _wrong(f"{path}.{key}", items, "a list")
    if check is None and set(map(type, items)) <= {dict}:  # a long list (tolerations) at C speed
        return None
    for index, item in enumerate(items):
        where = f"{path}.{key}[{index}]"
        if not isinstance(item, dict):
            return _wrong(where, item, "an object")
        problem = check(item, where) if check is not None else None
        if problem:
            return problem
    return None


def _strings(parent: Mapping[str, Any], key: str, path: str) -> str | None:
    values, problem = _object(parent, key, path)
    for name, value in values.items():
        if problem is None and not isinstance(value, str):
            problem = _wrong(f"{path}.{key}.{excerpt(str(name))}", value, "a string")
    return problem


def _container(container: Mapping[str, Any], path: str) -> str | None:
    name = container.get("name")
    if name is not None and not isinstance(name, str):
        return _wrong(f"{path}.name", name, "a string")
    if name is not None and not is_dns_label(name):
        # The name is copied into the `applied` summary: only a real container name may be.
        return f"pod field {path}.name: {shown(name)} is not a container name (a DNS label of at most 63 characters)"
    resources, problem = _object(container, "resources", path)
    for side in ("requests", "limits"):
        if problem is None:
            problem = _quantities(resources, side, f"{path}.resources")
    return problem or _each(container, "volumeMounts", path, None)


_MAX_RESOURCE_NAME = 253 + 1 + 63  # a qualified name: DNS subdomain prefix, "/", name


def _quantities(parent: Mapping[str, Any], key: str, path: str) -> str | None:
    values, problem = _object(parent, key, path)
    if problem is None:
        for name, value in values.items():
            if len(name) > _MAX_RESOURCE_NAME:  # the names are copied into the `applied` summary
                problem = f"pod field {path}.{key}: {shown(name)} is not a resource name (too long)"
            else:
                problem = _quantity(value, f"{path}.{key}.{name}")
            if problem:
                break
    return problem


def _quantity(value: object, path: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        return _wrong(path, value, "a quantity")
    try:
        parse_quantity(value)
    except InvalidQuantity as exc:
        return f"pod field {path}: {exc}"
    return None


def _volume(volume: Mapping[str, Any], path: str) -> str | None:
    empty_dir, problem = _object(volume, "emptyDir", path)
    return problem or _quantity(empty_dir.get("sizeLimit"), f"{path}.emptyDir.sizeLimit")


def _affinity(spec: Mapping[str, Any]) -> str | None:
    affinity, problem = _object(spec, "affinity", "spec")
    if problem:
        return problem
    node, problem = _object(affinity, "nodeAffinity", "spec.affinity")
    if problem:
        return problem
    path, key = "spec.affinity.nodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution"
    required, problem = _object(node, key, path)
    return problem or _each(required, "nodeSelectorTerms", f"{path}.{key}", _term)


def _term(term: Mapping[str, Any], path: str) -> str | None:
    return _each(term, "matchExpressions", path, _requirement)


def _requirement(requirement: Mapping[str, Any], path: str) -> str | None:
    key = requirement.get("key")
    if not isinstance(key, str):
        return _wrong(f"{path}.key", key, "a string")
    values = requirement.get("values")
    if values is None:
        return None
    if not isinstance(values, list):
        return _wrong(f"{path}.values", values, "a list")
    for index, value in enumerate(values):
        if not isinstance(value, str):
            return _wrong(f"{path}.values[{index}]", value, "a string")
    return None
