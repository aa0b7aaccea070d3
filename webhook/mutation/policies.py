"""What a matched policy adds to a plan: its checks (allowed accelerators, GPU count) and how its decisions read.

The resolution itself (which policy, which configuration) is `webhook.engine.policies`; this module only turns a
policy into denials and into notes that name it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import ROUND_CEILING
from typing import Any

from webhook.engine.accelerators import BaseAccelerator
from webhook.engine.catalog import DeviceClass, find_device
from webhook.engine.config import Policy, WebhookConfig
from webhook.engine.excerpt import shown
from webhook.engine.policies import LEVEL_NAMES, describe_match, level
from webhook.engine.quantity import InvalidQuantity, parse_quantity


def policy_label(policy: Policy) -> str:
    return f"policy {policy.name}"


def matched_note(policy: Policy) -> str:
    """One line saying which policy matched, at which precedence level, and which keys it sets."""
    keys = ", ".join(policy.changed_keys) or "nothing"
    return f"matched {describe_match(policy.match)} ({LEVEL_NAMES[level(policy.match)]} level); sets {keys}"


def accelerator_problem(policy: Policy, accelerator: BaseAccelerator) -> str | None:
    """Why `accelerator` is not allowed under `policy`, or None when it is."""
    allowed = policy.allowed_accelerators
    if allowed is None or any(_allows(entry, accelerator) for entry in allowed):
        return None
    wanted = accelerator.device + (f":{accelerator.partition_size}" if accelerator.partition_size else "")
    entry = find_device(accelerator.device)  # the name users write (`A100`), then the device string
    named = f"{shown(entry.name)} ({wanted})" if entry is not None else shown(wanted)
    return (
        f"{policy_label(policy)} ({describe_match(policy.match)}): accelerator {named} is not allowed; "
        f"allowed: {', '.join(allowed) or 'none'}"
    )


def _allows(entry: str, accelerator: BaseAccelerator) -> bool:
    return _allows_device(entry, accelerator.device, accelerator.device_class)


def own_accelerator_problem(policy: Policy, pod: Mapping[str, Any], config: WebhookConfig) -> str | None:
    """Why the accelerators the pod selects by itself (its nodeSelector, required node affinity and tolerations
    on a device node label) are not allowed under `policy`, or None. A selection of every device on such a label
    (`Exists`, `NotIn`, `DoesNotExist`) is refused too: it would reach any device the policy forbids."""
    allowed = policy.allowed_accelerators
    if allowed is None:
        return None
    classes = {config.device_class_config(c).device_node_label: c for c in DeviceClass}
    labels = {**classes, config.gpu_device_node_label: None}
    spelled = {label: device for device, label in config.accelerator_devices.items()}
    for where, label, value in _own_device_selections(pod, labels):
        if value is None:
            reason = f"selects any device on {shown(label)}"
        else:
            device = spelled.get(value, value)
            entry = find_device(device)
            device_class = labels[label] or (entry.device_class if entry is not None else DeviceClass.parse("GPU"))
            if any(_allows_device(e, device, device_class) for e in allowed):
                continue
            reason = f"asks for accelerator {shown(value)}"
        return (
            f"{policy_label(policy)} ({describe_match(policy.match)}): the pod's own {where} {reason}, which is "
            f"not allowed; allowed: {', '.join(allowed) or 'none'}"
        )
    return None


def _allows_device(entry: str, device: str, device_class: DeviceClass) -> bool:
    try:
        return DeviceClass.parse(entry) is device_class
    except ValueError:
        pass
    listed, asked = find_device(entry), find_device(device)
    if listed is not None and asked is not None:
        return listed is asked  # every spelling of one catalog device is that device
    return entry.lower() == device.lower()


def _own_device_selections(
    pod: Mapping[str, Any], labels: Mapping[str, object]
) -> Iterable[tuple[str, str, str | None]]:
    """(where, label, value) for each device a pod selects by itself; value None: any device on that label."""
    spec = _mapping(pod.get("spec"))
    for selected, value in _mapping(spec.get("nodeSelector")).items():
        if selected in labels:
            yield "nodeSelector", selected, value if isinstance(value, str) else None
    required = _mapping(_mapping(_mapping(spec.get("affinity")).get("nodeAffinity")).get(_REQUIRED))
    for term in _list(required.get("nodeSelectorTerms")):
        for requirement in map(_mapping, _list(_mapping(term).get("matchExpressions"))):
            key: object = requirement.get("key")
            if not isinstance(key, str) or key not in labels:
                continue
            values = _list(requirement.get("values"))
            if requirement.get("operator") != "In" or len(values) > _VALUES_READ:
                yield "node affinity", key, None
                continue
            for value in values:
                yield "node affinity", key, value if isinstance(value, str) else None
    tolerations = _list(spec.get("tolerations"))
    for toleration in map(_mapping, tolerations):
        tolerated: object = toleration.get("key")
        if isinstance(tolerated, str) and tolerated in labels:
            value = toleration.get("value")
            exact = toleration.get("operator", "Equal") == "Equal" and isinstance(value, str)
            yield "toleration", tolerated, value if exact and len(tolerations) <= _VALUES_READ else None


_REQUIRED = "requiredDuringSchedulingIgnoredDuringExecution"
_VALUES_READ = 64  # a longer list counts as "any device": a pod may list thousands, and none may slip through


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


MIG_PREFIX = "nvidia.com/mig-"  # `mig-strategy: mixed` counts a slice under its own resource name
# More devices than any machine holds: a count above it is shown as "more than" and never turned into an int, so
# a pod's `1e999999` costs a comparison, not the seconds of building a million-digit integer.
DEVICE_COUNT_CAP = 1_000_000


def gpu_counts(pod: Mapping[str, Any], resource_names: Iterable[str]) -> dict[str, int]:
    """The devices the pod occupies under each of `resource_names` and each MIG slice resource it uses, by the
    scheduler's rule for a pod's effective request: the larger of (the regular containers plus every sidecar)
    and, for each init container, itself plus the sidecars started before it. A container asks for its limit,
    else its request. Only names asked for; each count is at most `DEVICE_COUNT_CAP + 1`."""
    names = tuple(dict.fromkeys(resource_names))
    spec = pod.get("spec")
    spec = spec if isinstance(spec, Mapping) else {}
    running: dict[str, int] = {}  # regular containers and the sidecars started so far
    peak: dict[str, int] = {}  # the most any init container needs next to the sidecars started before it
    for container in _containers(spec, "initContainers"):
        asked = _device_asks(container, names)
        if container.get("restartPolicy") == "Always":  # a sidecar: runs beside everything after it
            running = _plus(running, asked)
            asked = {}
        for name, count in _plus(running, asked).items():
            peak[name] = max(peak.get(name, 0), count)
    for container in _containers(spec, "containers"):
        running = _plus(running, _device_asks(container, names))
    counts = {name: max(running.get(name, 0), peak.get(name, 0)) for name in {**running, **peak}}
    return {name: count for name, count in counts.items() if count}


_OVER = DEVICE_COUNT_CAP + 1


def _containers(spec: Mapping[str, Any], key: str) -> Iterable[Mapping[str, Any]]:
    containers = spec.get(key)
    if not isinstance(containers, list):
        return ()
    return (c for c in containers if isinstance(c, Mapping))


def _plus(left: Mapping[str, int], right: Mapping[str, int]) -> dict[str, int]:
    """Counts added name by name, each at most `_OVER`."""
    out = dict(left)
    for name, count in right.items():
        out[name] = min(out.get(name, 0) + count, _OVER)
    return out


def _device_asks(container: Mapping[str, Any], names: tuple[str, ...]) -> dict[str, int]:
    resources = container.get("resources")
    resources = resources if isinstance(resources, Mapping) else {}
    limits, requests = resources.get("limits"), resources.get("requests")
    limits = limits if isinstance(limits, Mapping) else {}
    requests = requests if isinstance(requests, Mapping) else {}
    slices = [k for k in (*requests, *limits) if isinstance(k, str) and k.startswith(MIG_PREFIX)]
    asks: dict[str, int] = {}
    for name in dict.fromkeys((*names, *slices)):
        value = limits.get(name, requests.get(name))
        if value is None:
            continue
        try:
            amount = parse_quantity(value)  # bounded: at most 64 characters, exponents within 1e6
        except (InvalidQuantity, ValueError, TypeError):
            continue  # the pod's own value; the API server refuses it
        # Compared as a Decimal first: only a count under the cap ever becomes an int.
        count = _OVER if amount > DEVICE_COUNT_CAP else int(amount.to_integral_value(rounding=ROUND_CEILING))
        if count:
            asks[name] = count
    return asks


def _shown_count(count: int) -> str:
    return f"more than {DEVICE_COUNT_CAP}" if count >= _OVER else str(count)


def gpu_problem(policy: Policy, pod: Mapping[str, Any], resource_names: Iterable[str]) -> str | None:
    """Why the pod asks for more GPUs (or other accelerator devices) than `policy` allows, or None."""
    if policy.max_gpus is None:
        return None
    counts = gpu_counts(pod, resource_names)
    total = min(sum(counts.values()), _OVER)
    if total <= policy.max_gpus:
        return None
    return (
        f"{policy_label(policy)} ({describe_match(policy.match)}): the pod asks for {_shown_count(total)} GPUs "
        f"({', '.join(counts)}); at most {policy.max_gpus} allowed"
    )


def limit_problem(pod: Mapping[str, Any], config: WebhookConfig, policy: Policy | None) -> str | None:
    """Why a container of the pod as it stands asks for more than a platform limit (of `policy`, else the global
    configuration), or None. For pods the webhook does not change: an in-place resize, and a pod admitted
    unchanged under `on-invalid: ignore`."""
    limits = config.platform_limits
    if not limits:
        return None
    spec = _mapping(pod.get("spec"))
    for kind in ("initContainers", "containers"):
        for container in _containers(spec, kind):
            resources = _mapping(container.get("resources"))
            for side in ("requests", "limits"):
                asked = _mapping(resources.get(side))
                for name, limit in limits.items():
                    value = asked.get(name)
                    if value is None:
                        continue
                    try:
                        over = parse_quantity(value) > parse_quantity(limit)
                    except (InvalidQuantity, ValueError, TypeError):
                        continue  # the pod's own value; the API server refuses it
                    if over:
                        own = policy is not None and name in (policy.platform_limits or {})
                        owner = (
                            f"the limit of {policy_label(policy)}"
                            if policy is not None and own
                            else "the platform limit"
                        )
                        return (
                            f"container {shown(container.get('name'))}: {side}.{name} {shown(value)} is above "
                            f"{owner} {limit}"
                        )
    return None


def credit(notes: Iterable[str], policy: Policy | None) -> tuple[str, ...]:
    """Notes of the resource step with the platform defaults and limits the policy set named as its own.

    The engine words them `<resource> request defaulted to the platform default (...)` and `... clamped to the
    platform limit ...` / `... is above the platform limit ...`; a resource the policy sets gets `policy <name>`.
    """
    notes = tuple(notes)
    if policy is None:
        return notes
    defaults, limits = policy.default_requests or {}, policy.platform_limits or {}
    out = []
    for note in notes:
        resource = note.split(" ", 1)[0]
        if resource in defaults and "the platform default" in note:
            note = note.replace("the platform default", f"the default of {policy_label(policy)}")
        elif resource in limits and "the platform limit" in note:
            note = note.replace("the platform limit", f"the limit of {policy_label(policy)}")
        out.append(note)
    return tuple(out)
