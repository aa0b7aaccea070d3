"""Names both sides of the engine share, defined once: flytekit's constants and the resource-name maps."""

from __future__ import annotations

from typing import Final

from flyteidl.core import tasks_pb2

__all__ = [
    "FIELD_TO_K8S",
    "FLYTE2_SHARED_MEMORY_MOUNT_NAME",
    "GENERIC_GPU",
    "IDL_TO_K8S",
    "PRIMARY_CONTAINER_DEFAULT_NAME",
    "RESOURCE_FIELDS",
    "SHARED_MEMORY_MOUNT_NAME",
    "SHARED_MEMORY_MOUNT_PATH",
]

# flytekit/core/constants.py and PodTemplate's default primary container name.
SHARED_MEMORY_MOUNT_NAME: Final = "flyte-shared-memory"
SHARED_MEMORY_MOUNT_PATH: Final = "/dev/shm"
PRIMARY_CONTAINER_DEFAULT_NAME: Final = "primary"
# The Flyte 2 SDK names its /dev/shm volume differently (flyte/_internal/runtime/resources_serde.py).
FLYTE2_SHARED_MEMORY_MOUNT_NAME: Final = "flyte-shm"

# The GPU as pod-template tasks send it; the backend renames it to the pod's accelerator resource.
GENERIC_GPU: Final = "gpu"

# flytekit's `Resources` fields, in flytekit's order, and their Kubernetes names (`gpu` stays generic).
RESOURCE_FIELDS: Final = ("cpu", "mem", "gpu", "ephemeral_storage")
FIELD_TO_K8S: Final[dict[str, str]] = {
    "cpu": "cpu",
    "mem": "memory",
    "gpu": GENERIC_GPU,
    "ephemeral_storage": "ephemeral-storage",
}
# The IDL's resource names as Flyte's `ToK8sResourceList` maps them (STORAGE and UNKNOWN are ignored there).
IDL_TO_K8S: Final[dict[int, str]] = {
    tasks_pb2.Resources.CPU: "cpu",
    tasks_pb2.Resources.MEMORY: "memory",
    tasks_pb2.Resources.GPU: GENERIC_GPU,
    tasks_pb2.Resources.EPHEMERAL_STORAGE: "ephemeral-storage",
}
