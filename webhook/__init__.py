"""flyte-resources-webhook: Flyte task resources, accelerators and shared memory applied at pod admission."""

__version__ = "0.1.0"
