"""flytekit-compatible resource models and Kubernetes quantities (pure: no I/O).

The flytekit-shaped API is re-exported here; ``webhook.engine.accelerators`` and ``webhook.engine.quantity`` stay
submodules (``from webhook.engine.accelerators import A100``).
"""

from webhook.engine import accelerators
from webhook.engine.resources import (
    PRIMARY_CONTAINER_DEFAULT_NAME,
    SHARED_MEMORY_MOUNT_NAME,
    SHARED_MEMORY_MOUNT_PATH,
    InvalidResource,
    Resources,
    ResourceSpec,
    construct_extended_resources,
    convert_resources_to_resource_model,
    pod_spec_from_resources,
)

__all__ = [
    "PRIMARY_CONTAINER_DEFAULT_NAME",
    "SHARED_MEMORY_MOUNT_NAME",
    "SHARED_MEMORY_MOUNT_PATH",
    "InvalidResource",
    "ResourceSpec",
    "Resources",
    "accelerators",
    "construct_extended_resources",
    "convert_resources_to_resource_model",
    "pod_spec_from_resources",
]
