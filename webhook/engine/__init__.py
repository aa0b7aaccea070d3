"""The engine (pure: no I/O), split along Flyte's own seam.

* SDK surfaces, what users write: flytekit 1.x's API under its own names (``resources``: ``Resources``,
  ``ResourceSpec``, ``convert_resources_to_resource_model``, ``construct_extended_resources``,
  ``pod_spec_from_resources``; ``accelerators``: ``A100``, ``V5E.slice_2x4``, ...) and Flyte 2's forms.
* Backend semantics, what Flyte's flyteplugins does to a pod: ``pod`` (resource resolution, placement, shared
  memory, ``ToK8sResourceList``) and ``config`` (the plugin's keys). It never imports the SDK surfaces.
* Shared by both: the accelerator model (``accelerators.BaseAccelerator``, ``Accelerator``), the device
  ``catalog``, ``names`` (constants and name maps, defined once) and ``quantity``.

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
