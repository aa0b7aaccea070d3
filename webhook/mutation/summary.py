"""The `applied` summary annotation: a stable record of what a pod carries from the webhook (same input, same
text, so a second pass adds no op). Only the webhook writes it: one it did not write goes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from flyteidl.core import tasks_pb2

from webhook.engine.accelerators import BaseAccelerator
from webhook.engine.config import Policy
from webhook.mutation.annotations import APPLIED, ResourceRequest


def summary(
    pod: Mapping[str, Any],
    request: ResourceRequest,
    target: str | None,
    gpu_name: str,
    *,
    resolved_resources: bool = False,
    policy: Policy | None = None,
    shared_memory: tasks_pb2.SharedMemory | None = None,
) -> str:
    """What `pod` (as planned) now carries from us: the policy, the target container's resources when we set
    them, the accelerator and the GPU resource name, and the shared memory."""
    record: dict[str, Any] = {}
    if policy is not None:
        record["policy"] = policy.name
    if target is not None:
        record["container"] = target
    if target is not None and (request.touches_resources or request.gpu_resource_key or resolved_resources):
        for container in (pod.get("spec") or {}).get("containers") or []:
            if container.get("name") == target:
                resources = container.get("resources") or {}
                record["requests"] = dict(resources.get("requests") or {})
                record["limits"] = dict(resources.get("limits") or {})
    if request.accelerator is not None:
        record["accelerator"] = _accelerator(request.accelerator)
        record["gpuResource"] = gpu_name
    if shared_memory is not None:
        record["sharedMemory"] = {"mountPath": shared_memory.mount_path}
        if shared_memory.size_limit:
            record["sharedMemory"]["sizeLimit"] = shared_memory.size_limit
    return orjson.dumps(record, option=orjson.OPT_SORT_KEYS).decode()


def _accelerator(accelerator: BaseAccelerator) -> dict[str, Any]:
    return {
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


def with_summary(pod: Mapping[str, Any], prefix: str, text: str) -> dict[str, Any]:
    metadata = dict(pod.get("metadata") or {})
    metadata["annotations"] = {**(metadata.get("annotations") or {}), prefix + APPLIED: text}
    return {**pod, "metadata": metadata}


def without_summary(pod: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    metadata = dict(pod.get("metadata") or {})
    metadata["annotations"] = {k: v for k, v in (metadata.get("annotations") or {}).items() if k != prefix + APPLIED}
    return {**pod, "metadata": metadata}
