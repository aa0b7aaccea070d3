"""Parity cases: Python expressions evaluated against real flytekit once, and against the engine in tests.

Regenerate ``flytekit_1.16.31.json`` (never needed at test time; flytekit is not a project dependency)::

    python3 -m venv /tmp/fk && /tmp/fk/bin/pip install flytekit==1.16.31 flyteidl==1.16.8 kubernetes==36.0.3
    /tmp/fk/bin/python tests/engine/vectors/flytekit_cases.py > tests/engine/vectors/flytekit_1.16.31.json

``normalize`` turns results into JSON (protobuf as text format, pod specs as the client serializes them,
Resources/ResourceSpec via ``to_dict``); errors are recorded as ``{"error": <type name>, "message": ...}``.
"""

from __future__ import annotations

import json
from typing import Any

# Each case: (id, expression). The namespace holds Resources, ResourceSpec, convert_resources_to_resource_model,
# construct_extended_resources, pod_spec_from_resources and every accelerator name.
CASES: list[tuple[str, str]] = [
    # flytekit.core.resources: Resources / ResourceSpec
    ("v1", "Resources(cpu=0.5)"),
    ("v2", "Resources(cpu=(1,))"),
    ("v3", "Resources(cpu=[1, 2, 3])"),
    ("v4", "Resources(mem=1.5)"),
    ("v5a", "Resources(gpu=0.5)"),
    ("v5b", "Resources(ephemeral_storage=1.5)"),
    ("v6", "Resources(cpu=('1', None))"),
    ("v7a", "Resources(cpu=-1)"),
    ("v7b", "Resources(cpu='abc')"),
    ("v7c", "Resources(cpu=True)"),
    ("v7d", "Resources(ephemeral_storage='123Mb')"),
    ("v8", "Resources(ephemeral_storage=('1Gi', '2Gi'))"),
    ("v9", "Resources(memory='1Gi')"),
    ("v10", "Resources('1', '2Gi', '1', '10Gi')"),
    ("v11", "ResourceSpec.from_multiple_resource(Resources(cpu='1', mem=('1Gi', '2Gi')))"),
    ("v12", "ResourceSpec.from_multiple_resource(Resources(cpu=(1, 2), gpu=1, ephemeral_storage=('1Gi', '2Gi')))"),
    ("v13", "Resources(cpu=('1', '2'), mem=[1, '2Gi']).to_json()"),
    ("v14a", "Resources.from_dict({'mem': 1.5})"),
    ("v14b", "Resources.from_dict({'cpu': True})"),
    ("v14c", "Resources.from_dict({'ephemeral_storage': ['1Gi', '2Gi']})"),
    ("v14d", "Resources.from_dict({'memory': '1Gi'})"),
    ("v14e", "Resources.from_dict({'cpu': [1, 2, 3]})"),
    ("v14f", "Resources.from_dict({'mem': [1.5, 2]})"),
    ("v15", "ResourceSpec.from_dict({'requests': {'cpu': '1'}})"),
    ("res_empty", "Resources()"),
    ("res_eq_int_str", "Resources(cpu=1) == Resources(cpu='1')"),
    ("res_eq_same", "Resources(cpu=1, mem='1Gi') == Resources(1, '1Gi')"),
    ("res_empty_tuple", "Resources(cpu=())"),
    ("res_mem_pair_float", "Resources(mem=('1Gi', 2.0))"),
    ("res_cpu_mixed_pair", "Resources(cpu=[0.5, '1'])"),
    ("res_gpu_pair", "Resources(gpu=(1, 2))"),
    ("res_to_dict_tuple", "Resources(cpu=(0.5, 1), gpu=1).to_dict()"),
    ("res_from_json", 'Resources.from_json(\'{"cpu": ["1", "2"], "mem": 1024, "gpu": null}\')'),
    ("res_from_dict_int_cpu", "Resources.from_dict({'cpu': 2, 'mem': 1024, 'gpu': '1', 'ephemeral_storage': 500})"),
    ("res_from_dict_gpu_float", "Resources.from_dict({'gpu': 2.0})"),
    ("spec_to_json", "ResourceSpec(requests=Resources(cpu='1'), limits=Resources(cpu='2')).to_json()"),
    ("spec_from_dict", "ResourceSpec.from_dict({'requests': {'cpu': '1'}, 'limits': {'mem': '1Gi', 'x': 1}})"),
    ("spec_from_multiple_empty", "ResourceSpec.from_multiple_resource(Resources())"),
    ("spec_from_multiple_list", "ResourceSpec.from_multiple_resource(Resources(cpu=[0.5, '1'], mem=1024))"),
    # convert_resources_to_resource_model (the override encoding)
    (
        "v16",
        "convert_resources_to_resource_model(requests=Resources(cpu=1, mem=1024, gpu=1, ephemeral_storage=500),"
        " limits=Resources(cpu='2', mem='2Gi', gpu='2', ephemeral_storage='1Gi'))",
    ),
    (
        "v17",
        "convert_resources_to_resource_model(requests=Resources(ephemeral_storage='1Gi', gpu='1', mem='1Gi', cpu='1'))",
    ),
    ("v18a", "convert_resources_to_resource_model(requests=Resources(cpu=0.5))"),
    ("v18b", "convert_resources_to_resource_model(requests=Resources(cpu=1.0))"),
    ("v18c", "convert_resources_to_resource_model(requests=Resources(cpu=1e-3))"),
    ("v18d", "convert_resources_to_resource_model(requests=Resources(cpu=0.1 + 0.2))"),
    ("v18e", "convert_resources_to_resource_model(requests=Resources(cpu=1e20))"),
    ("v19a", "convert_resources_to_resource_model(requests=Resources(cpu=0, mem='0'))"),
    ("v19b", "convert_resources_to_resource_model(requests=Resources(cpu=''))"),
    ("v20", "convert_resources_to_resource_model()"),
    ("v21", "convert_resources_to_resource_model(requests=Resources(cpu=('1', '2')))"),
    ("v21b", "convert_resources_to_resource_model(limits=Resources(mem=['1Gi', '2Gi']))"),
    ("v30", "convert_resources_to_resource_model(requests=Resources(cpu=0.5, mem=1024))"),
    ("crm_limits_only", "convert_resources_to_resource_model(limits=Resources(gpu=2))"),
    # construct_extended_resources
    ("v31a", "construct_extended_resources()"),
    ("v31b", "construct_extended_resources(shared_memory=False)"),
    ("v31c", "construct_extended_resources(shared_memory=1024)"),
    ("v32a", "construct_extended_resources(shared_memory=True)"),
    ("v32b", "construct_extended_resources(shared_memory='')"),
    ("v33a", "construct_extended_resources(shared_memory='2Gi')"),
    ("v33b", "construct_extended_resources(shared_memory='abc')"),
    ("v34", "construct_extended_resources(accelerator=T4)"),
    ("v35a", "construct_extended_resources(accelerator=A100)"),
    ("v35b", "construct_extended_resources(accelerator=A100.unpartitioned)"),
    ("v35c", "construct_extended_resources(accelerator=A100.partition_1g_5gb)"),
    ("v36a", "construct_extended_resources(accelerator=A100.partition_2g_10gb.unpartitioned)"),
    ("v36b", "construct_extended_resources(accelerator=A100.partitioned('9g.99gb'))"),
    ("v37a", "construct_extended_resources(accelerator=A100_80GB.partition_7g_80gb)"),
    ("v37b", "construct_extended_resources(accelerator=V5E.slice_2x4)"),
    ("v37c", "construct_extended_resources(accelerator=V5P.slice_2x2x1)"),
    ("v38a", "construct_extended_resources(accelerator=GPUAccelerator(''))"),
    ("v38b", "construct_extended_resources(accelerator='nvidia-tesla-t4')"),
    ("v39", "construct_extended_resources(accelerator=L4, shared_memory='1Gi')"),
    ("mig_bare", "MultiInstanceGPUAccelerator().to_flyte_idl()"),
    ("mig_unpartitioned_twice", "A100.unpartitioned.unpartitioned.to_flyte_idl()"),
    ("mig_partitioned_unpartitioned", "A100.partitioned('3g.20gb').unpartitioned.to_flyte_idl()"),
    ("v5p_partitioned", "V5P.partitioned('2x2x2').to_flyte_idl()"),
    ("gpu_custom", "GPUAccelerator('amd-mi300x').to_flyte_idl()"),
    # pod_spec_from_resources (flytekit run with kubernetes 36.0.3)
    (
        "v40",
        "pod_spec_from_resources('p', requests=Resources(cpu='1', mem='1Gi'),"
        " limits=Resources(cpu='2', mem='4Gi', gpu='1', ephemeral_storage='10Gi'))",
    ),
    ("v41", "pod_spec_from_resources('primary', requests=Resources(cpu=0.5, mem=1024))"),
    ("v42", "pod_spec_from_resources('primary', limits=Resources(gpu=2), k8s_gpu_resource_key='amd.com/gpu')"),
    ("v43", "pod_spec_from_resources('primary', requests=Resources(cpu='1'), limits=Resources(mem='4Gi'))"),
    ("v44a", "pod_spec_from_resources('primary', requests=Resources(), limits=Resources(cpu='1'))"),
    ("v44b", "pod_spec_from_resources('primary')"),
    ("v44c", "pod_spec_from_resources('primary', requests=Resources(), limits=Resources())"),
    ("v45a", "pod_spec_from_resources('primary', requests=Resources(cpu=('1', '2')))"),
    ("v45c", "pod_spec_from_resources('primary', limits=Resources(mem=['1Gi', '2Gi']))"),
]

# Every accelerator constant and named partition, through to_flyte_idl().
_ACCELERATOR_NAMES = [
    "A10G", "L4", "L4_VWS", "L40S", "K80", "M60", "P4", "P100", "T4", "V100", "H100", "H200", "RTX_PRO_6000",
]  # fmt: skip
_PARTITIONED = {
    "A100": ["partition_1g_5gb", "partition_2g_10gb", "partition_3g_20gb", "partition_4g_20gb", "partition_7g_40gb"],
    "A100_80GB": [
        "partition_1g_10gb", "partition_2g_20gb", "partition_3g_40gb", "partition_4g_40gb", "partition_7g_80gb",
    ],
    "V5E": ["slice_1x1", "slice_2x2", "slice_2x4", "slice_4x4", "slice_4x8", "slice_8x8", "slice_8x16", "slice_16x16"],
    "V5P": [
        "slice_2x2x1", "slice_2x2x2", "slice_2x4x4", "slice_4x4x4", "slice_4x4x8", "slice_4x8x8", "slice_8x8x8",
        "slice_8x8x16", "slice_8x16x16", "slice_16x16x16", "slice_16x16x24",
    ],
    "V6E": ["slice_1x1", "slice_2x2", "slice_2x4", "slice_4x4", "slice_4x8", "slice_8x8", "slice_8x16", "slice_16x16"],
}  # fmt: skip
CASES += [(f"acc_{name}", f"{name}.to_flyte_idl()") for name in _ACCELERATOR_NAMES]
for _name, _attrs in _PARTITIONED.items():
    CASES.append((f"acc_{_name}", f"{_name}.to_flyte_idl()"))
    CASES.append((f"acc_{_name}_unpartitioned", f"{_name}.unpartitioned.to_flyte_idl()"))
    CASES += [(f"acc_{_name}_{attr}", f"{_name}.{attr}.to_flyte_idl()") for attr in _attrs]
    CASES += [(f"acc_{_name}_{attr}_unp", f"{_name}.{attr}.unpartitioned.to_flyte_idl()") for attr in _attrs]


def normalize(value: Any) -> Any:
    """A JSON-able view of a result, identical for flytekit's and the engine's objects."""
    from google.protobuf import text_format
    from google.protobuf.message import Message

    if hasattr(value, "to_flyte_idl") and not isinstance(value, Message) and not hasattr(value, "device"):
        value = value.to_flyte_idl()  # flytekit's models.task.Resources
    if isinstance(value, Message):
        return {"proto": value.DESCRIPTOR.full_name, "text": text_format.MessageToString(value)}
    if type(value).__name__ == "V1PodSpec":
        from kubernetes.client import ApiClient

        return {"pod_spec": ApiClient().sanitize_for_serialization(value)}
    if type(value).__name__ in ("Resources", "ResourceSpec"):
        return {type(value).__name__: value.to_dict()}
    if isinstance(value, tuple | list):
        return [normalize(v) for v in value]
    return value


def evaluate(expression: str, namespace: dict[str, Any]) -> dict[str, Any]:
    try:
        return {"result": normalize(eval(expression, dict(namespace)))}
    except Exception as exc:  # record any failure, like flytekit raises it
        return {"error": type(exc).__name__, "message": str(exc)}


def _flytekit_namespace() -> dict[str, Any]:
    import flytekit.core.resources as resources
    import flytekit.extras.accelerators as accelerators

    namespace = {name: getattr(accelerators, name) for name in dir(accelerators) if not name.startswith("_")}
    for name in (
        "Resources",
        "ResourceSpec",
        "convert_resources_to_resource_model",
        "construct_extended_resources",
        "pod_spec_from_resources",
    ):
        namespace[name] = getattr(resources, name)
    return namespace


def main() -> None:
    import flytekit
    import kubernetes

    namespace = _flytekit_namespace()
    out = {
        "_comment": "Generated by tests/engine/vectors/flytekit_cases.py (see its docstring) with real flytekit.",
        "flytekit": flytekit.__version__,
        "kubernetes": kubernetes.__version__,
        "cases": {case_id: {"expr": expr, **evaluate(expr, namespace)} for case_id, expr in CASES},
    }
    print(json.dumps(out, indent=1, sort_keys=False))


if __name__ == "__main__":
    main()
