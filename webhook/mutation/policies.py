"""What a matched policy adds to a plan: its checks (allowed accelerators, GPU count) and how its decisions read.

The resolution itself (which policy, which configuration) is `webhook.engine.policies`; this module only turns a
policy into denials and into notes that name it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from webhook.engine.accelerators import BaseAccelerator
from webhook.engine.catalog import DeviceClass, find_device
from webhook.engine.config import Policy
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
    try:
        return DeviceClass.parse(entry) is accelerator.device_class
    except ValueError:
        pass
    listed, asked = find_device(entry), find_device(accelerator.device)
    if listed is not None and asked is not None:
        return listed is asked  # every spelling of one catalog device is that device
    return entry.lower() == accelerator.device.lower()


MIG_PREFIX = "nvidia.com/mig-"  # `mig-strategy: mixed` counts a slice under its own resource name


def gpu_counts(pod: Mapping[str, Any], resource_names: Iterable[str]) -> dict[str, int]:
    """The devices the pod's containers ask for (limit, else request) under each of `resource_names` and each
    MIG slice resource they use, summed over the containers; only names asked for."""
    names = tuple(dict.fromkeys(resource_names))
    counts: dict[str, int] = {}
    for container in (pod.get("spec") or {}).get("containers") or ():
        resources = container.get("resources") or {}
        limits, requests = resources.get("limits") or {}, resources.get("requests") or {}
        slices = [k for k in {**requests, **limits} if isinstance(k, str) and k.startswith(MIG_PREFIX)]
        for name in (*names, *slices):
            value = limits.get(name, requests.get(name))
            if value is None:
                continue
            try:
                count = int(parse_quantity(value))
            except (InvalidQuantity, ValueError, TypeError):
                continue  # the pod's own value; the API server refuses it
            if count:
                counts[name] = counts.get(name, 0) + count
    return counts


def gpu_problem(policy: Policy, pod: Mapping[str, Any], resource_names: Iterable[str]) -> str | None:
    """Why the pod asks for more GPUs (or other accelerator devices) than `policy` allows, or None."""
    if policy.max_gpus is None:
        return None
    counts = gpu_counts(pod, resource_names)
    total = sum(counts.values())
    if total <= policy.max_gpus:
        return None
    return (
        f"{policy_label(policy)} ({describe_match(policy.match)}): the pod asks for {total} GPUs "
        f"({', '.join(counts)}); at most {policy.max_gpus} allowed"
    )


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
