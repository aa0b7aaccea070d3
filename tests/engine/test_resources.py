"""flytekit 1.16.31's Resources API (`Resources`, `ResourceSpec`, `convert_resources_to_resource_model`,
`construct_extended_resources`, `pod_spec_from_resources`; vectors 1-46) and Flyte's ToK8sResourceList
(vectors 71-72)."""

from __future__ import annotations

from typing import Any

import pytest
from flyteidl.core import tasks_pb2
from kubernetes.client import ApiClient
from pydantic import ValidationError

from webhook.engine import (
    SHARED_MEMORY_MOUNT_NAME,
    SHARED_MEMORY_MOUNT_PATH,
    InvalidResource,
    Resources,
    ResourceSpec,
    construct_extended_resources,
    convert_resources_to_resource_model,
    pod_spec_from_resources,
)
from webhook.engine.accelerators import A100, L4, T4, GPUAccelerator
from webhook.engine.pod import idl_resources_to_k8s
from webhook.engine.resources import (
    PRIMARY_CONTAINER_DEFAULT_NAME,
    MissingField,
)

RN = tasks_pb2.Resources
Entry = RN.ResourceEntry


def _entries(resources: tasks_pb2.Resources, side: str) -> list[tuple[str, str]]:
    return [(RN.ResourceName.Name(e.name), e.value) for e in getattr(resources, side)]


# --- Resources / ResourceSpec ----------------------------------------------------------------------------------------


def test_v1_float_cpu_kept() -> None:
    assert Resources(cpu=0.5).cpu == 0.5
    assert isinstance(Resources(cpu=0.5).cpu, float)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"cpu": (1,)}, ValueError, "(1,) must be of length 2"),  # v2
        ({"cpu": [1, 2, 3]}, ValueError, "[1, 2, 3] must be of length 2"),  # v3
        ({"cpu": ()}, ValueError, "() must be of length 2"),
        ({"mem": 1.5}, AssertionError, "1.5 should be of type str, int or a list/tuple of str, int"),  # v4
        ({"gpu": 0.5}, AssertionError, "0.5 should be of type str, int or a list/tuple of str, int"),  # v5
        ({"ephemeral_storage": 1.5}, AssertionError, "1.5 should be of type str, int or a list/tuple of str, int"),
        ({"cpu": ("1", None)}, AssertionError, "('1', None) should be of type str, int, float or a list/tuple of str, int, float"),  # noqa: E501  v6
        ({"mem": ("1Gi", 2.0)}, AssertionError, "('1Gi', 2.0) should be of type str, int or a list/tuple of str, int"),
        ({"memory": "1Gi"}, TypeError, "unexpected keyword argument 'memory'"),  # v9
        ({"persistent_storage": "1Gi"}, TypeError, "unexpected keyword argument 'persistent_storage'"),
    ],
)  # fmt: skip
def test_flytekit_errors(kwargs: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error) as info:
        Resources(**kwargs)
    assert message in str(info.value)
    assert type(info.value) is error


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        # v7: flytekit accepts these; Kubernetes rejects them, so the engine does too.
        ({"cpu": -1}, "Resources.cpu: -1 is not a valid Kubernetes quantity: resource quantities must not be negative"),
        ({"cpu": "-1"}, "Resources.cpu: '-1' is not a valid Kubernetes quantity"),
        ({"cpu": "abc"}, "Resources.cpu: 'abc' is not a valid Kubernetes quantity"),
        ({"cpu": True}, "Resources.cpu: True is not a valid Kubernetes quantity: a boolean is not a quantity"),
        ({"mem": False}, "Resources.mem: False is not a valid Kubernetes quantity"),
        ({"ephemeral_storage": "123Mb"}, "Resources.ephemeral_storage: '123Mb' is not a valid Kubernetes quantity"),
        ({"cpu": ""}, "Resources.cpu: '' is not a valid Kubernetes quantity: empty string"),  # v19/v26 "" rejected
        ({"mem": ("1Gi", "x")}, "Resources.mem: 'x' is not a valid Kubernetes quantity"),
        ({"cpu": float("nan")}, "Resources.cpu: nan is not a valid Kubernetes quantity"),
        ({"gpu": "500m"}, "Resources.gpu: '500m' is not a whole number of GPUs"),
        ({"gpu": "1.5"}, "Resources.gpu: '1.5' is not a whole number of GPUs"),
        ({"gpu": ("1", "0.5")}, "Resources.gpu: '0.5' is not a whole number of GPUs"),
    ],
)  # fmt: skip
def test_stricter_than_flytekit(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidResource) as info:
        Resources(**kwargs)
    assert str(info.value).startswith(message)
    assert isinstance(info.value, ValueError)
    field = next(iter(kwargs))
    assert info.value.field == f"Resources.{field}"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"cpu": 0},
        {"cpu": "0"},
        {"mem": "0"},
        {"gpu": 0},
        {"gpu": "2"},
        {"gpu": "1.0"},
        {"cpu": "1e-12"},
        {"mem": "1.5"},
        {"ephemeral_storage": ("1Gi", "2Gi")},  # v8
        {"cpu": [0.5, "1"]},
        {"cpu": 1e20},
    ],
)
def test_valid_values(kwargs: dict[str, Any]) -> None:
    resources = Resources(**kwargs)
    for field, value in kwargs.items():
        assert getattr(resources, field) == value


def test_v10_positional() -> None:
    resources = Resources("1", "2Gi", "1", "10Gi")
    assert (resources.cpu, resources.mem, resources.gpu, resources.ephemeral_storage) == ("1", "2Gi", "1", "10Gi")


def test_v11_v12_from_multiple_resource() -> None:
    spec = ResourceSpec.from_multiple_resource(Resources(cpu="1", mem=("1Gi", "2Gi")))
    assert spec == ResourceSpec(requests=Resources(cpu="1", mem="1Gi"), limits=Resources(mem="2Gi"))
    spec = ResourceSpec.from_multiple_resource(Resources(cpu=(1, 2), gpu=1, ephemeral_storage=("1Gi", "2Gi")))
    assert spec.requests == Resources(cpu=1, gpu=1, ephemeral_storage="1Gi")
    assert spec.limits == Resources(cpu=2, ephemeral_storage="2Gi")
    assert spec.requests.cpu == 1 and isinstance(spec.requests.cpu, int)  # values are not converted


def test_v13_to_json() -> None:
    text = Resources(cpu=("1", "2"), mem=[1, "2Gi"]).to_json()
    assert text == '{"cpu": ["1", "2"], "mem": [1, "2Gi"], "gpu": null, "ephemeral_storage": null}'
    assert Resources.from_json(text) == Resources(cpu=["1", "2"], mem=[1, "2Gi"])


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"mem": 1.5}, Resources(mem="1.5")),  # v14
        ({"gpu": 2.0}, Resources(gpu="2.0")),
        ({"memory": "1Gi"}, Resources()),  # unknown keys ignored
        ({"cpu": 2, "mem": 1024, "ephemeral_storage": 500}, Resources(cpu=2, mem=1024, ephemeral_storage=500)),
        ({"cpu": 0.5, "gpu": None}, Resources(cpu=0.5)),
    ],
)
def test_v14_from_dict(data: dict[str, Any], expected: Resources) -> None:
    assert Resources.from_dict(data) == expected


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        (
            {"cpu": True},
            InvalidResource,
            "Resources.cpu: 'True' is not a valid Kubernetes quantity",
        ),  # flytekit: 'True'
        ({"ephemeral_storage": ["1Gi", "2Gi"]}, InvalidResource, "\"['1Gi', '2Gi']\" is not a valid"),
        ({"cpu": [1, 2, 3]}, ValueError, "[1, 2, 3] must be of length 2"),
        ({"mem": [1.5, 2]}, AssertionError, "[1.5, 2] should be of type str, int or a list/tuple of str, int"),
    ],
)
def test_v14_from_dict_errors(data: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=None) as info:
        Resources.from_dict(data)
    assert message in str(info.value)


def test_v15_resource_spec_dict() -> None:
    with pytest.raises(MissingField, match='Field "limits" of type Resources is missing in ResourceSpec instance'):
        ResourceSpec.from_dict({"requests": {"cpu": "1"}})
    spec = ResourceSpec(requests=Resources(cpu="1"), limits=Resources(cpu="2"))
    assert spec.to_dict() == {
        "requests": {"cpu": "1", "mem": None, "gpu": None, "ephemeral_storage": None},
        "limits": {"cpu": "2", "mem": None, "gpu": None, "ephemeral_storage": None},
    }
    assert ResourceSpec.from_json(spec.to_json()) == spec
    assert ResourceSpec(Resources(cpu="1"), Resources(cpu="2")) == spec


def test_equality_and_hashing() -> None:
    assert Resources(cpu=1) != Resources(cpu="1")
    assert Resources(cpu=1, mem="1Gi") == Resources(1, "1Gi")
    with pytest.raises(TypeError):
        hash(Resources())


def test_assignment_is_validated() -> None:
    resources = Resources(cpu="1")
    with pytest.raises(InvalidResource, match=r"Resources\.cpu: 'abc'"):
        resources.cpu = "abc"
    assert resources.cpu == "1"
    with pytest.raises(AssertionError):
        resources.mem = 1.5  # type: ignore[assignment]
    resources.cpu = "2"
    assert resources.cpu == "2"


def test_model_validate_checks_too() -> None:
    assert Resources.model_validate({"cpu": "1"}) == Resources(cpu="1")
    with pytest.raises(ValidationError, match=r"Resources\.cpu: 'abc'"):
        Resources.model_validate({"cpu": "abc"})


# --- from_mapping (annotation parser) -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"cpu": "1", "memory": "2Gi"}, Resources(cpu="1", mem="2Gi")),
        ({"mem": ["1Gi", "2Gi"]}, Resources(mem=["1Gi", "2Gi"])),
        ({"ephemeral-storage": "10Gi", "gpu": 1}, Resources(gpu=1, ephemeral_storage="10Gi")),
        ({"ephemeral_storage": "10Gi"}, Resources(ephemeral_storage="10Gi")),
        ({"cpu": 0.5}, Resources(cpu=0.5)),
        ({}, Resources()),
    ],
)
def test_from_mapping(data: dict[str, Any], expected: Resources) -> None:
    assert Resources.from_mapping(data) == expected


@pytest.mark.parametrize(
    ("data", "kwargs", "message"),
    [
        ({"memroy": "1Gi"}, {}, "Resources: unknown key 'memroy'; valid keys: cpu, mem, memory, gpu, ephemeral_storage"),  # noqa: E501
        ({"memory": "1Gi"}, {"field_aliases": False}, "unknown key 'memory'; valid keys: cpu, mem, gpu, ephemeral_storage"),  # noqa: E501
        ({"mem": "1Gi", "memory": "2Gi"}, {}, "'memory' sets mem, which is already set"),
        ({1: "1"}, {}, "unknown key 1"),
        ({"mem": 1.5}, {}, "Resources.mem: 1.5 should be of type str, int"),
        ({"cpu": [1, 2, 3]}, {}, "Resources.cpu: [1, 2, 3] must be of length 2"),
        ({"cpu": "abc"}, {}, "Resources.cpu: 'abc' is not a valid Kubernetes quantity"),
        ({"gpu": "0.5"}, {}, "Resources.gpu: '0.5' is not a whole number"),
        ({"cpu": {"a": 1}}, {}, "Resources.cpu: {'a': 1} should be of type str, int, float"),
    ],
)  # fmt: skip
def test_from_mapping_errors(data: dict[Any, Any], kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as info:
        Resources.from_mapping(data, **kwargs)
    assert message in str(info.value)


# --- convert_resources_to_resource_model -----------------------------------------------------------------------------


def test_v16_v17_order() -> None:
    model = convert_resources_to_resource_model(
        requests=Resources(cpu=1, mem=1024, gpu=1, ephemeral_storage=500),
        limits=Resources(cpu="2", mem="2Gi", gpu="2", ephemeral_storage="1Gi"),
    )
    assert _entries(model, "requests") == [("CPU", "1"), ("MEMORY", "1024"), ("GPU", "1"), ("EPHEMERAL_STORAGE", "500")]
    assert _entries(model, "limits") == [("CPU", "2"), ("MEMORY", "2Gi"), ("GPU", "2"), ("EPHEMERAL_STORAGE", "1Gi")]
    reverse = convert_resources_to_resource_model(Resources(ephemeral_storage="1Gi", gpu="1", mem="1Gi", cpu="1"))
    assert [name for name, _ in _entries(reverse, "requests")] == ["CPU", "MEMORY", "GPU", "EPHEMERAL_STORAGE"]


@pytest.mark.parametrize(
    ("cpu", "text"),
    [(0.5, "0.5"), (1.0, "1.0"), (1e-3, "0.001"), (0.1 + 0.2, "0.30000000000000004"), (1e20, "1e+20"), (0, "0")],
)
def test_v18_v19_str_values(cpu: float, text: str) -> None:
    model = convert_resources_to_resource_model(requests=Resources(cpu=cpu))
    assert _entries(model, "requests") == [("CPU", text)]


def test_v19_v20_zero_and_empty() -> None:
    model = convert_resources_to_resource_model(requests=Resources(cpu=0, mem="0"))
    assert _entries(model, "requests") == [("CPU", "0"), ("MEMORY", "0")]
    empty = convert_resources_to_resource_model()
    assert isinstance(empty, tasks_pb2.Resources)
    assert list(empty.requests) == [] and list(empty.limits) == []


def test_v21_pairs_rejected() -> None:
    with pytest.raises(ValueError, match=r"^\('1', '2'\) can not be a list or tuple$"):
        convert_resources_to_resource_model(requests=Resources(cpu=("1", "2")))
    with pytest.raises(ValueError, match=r"^\['1Gi', '2Gi'\] can not be a list or tuple$"):
        convert_resources_to_resource_model(limits=Resources(mem=["1Gi", "2Gi"]))


def test_v30_override_encoding() -> None:
    model = convert_resources_to_resource_model(requests=Resources(cpu=0.5, mem=1024))
    assert _entries(model, "requests") == [("CPU", "0.5"), ("MEMORY", "1024")]
    assert _entries(model, "limits") == []


# --- construct_extended_resources ------------------------------------------------------------------------------------


@pytest.mark.parametrize("shared_memory", [None, False, 1024])
def test_v31_none(shared_memory: Any) -> None:
    assert construct_extended_resources(shared_memory=shared_memory) is None


@pytest.mark.parametrize(("shared_memory", "size"), [(True, ""), ("", ""), ("2Gi", "2Gi"), ("1.5Gi", "1.5Gi")])
def test_v32_v33_shared_memory(shared_memory: bool | str, size: str) -> None:
    extended = construct_extended_resources(shared_memory=shared_memory)
    assert extended is not None and not extended.HasField("gpu_accelerator")
    assert extended.shared_memory == tasks_pb2.SharedMemory(
        mount_path=SHARED_MEMORY_MOUNT_PATH, mount_name=SHARED_MEMORY_MOUNT_NAME, size_limit=size
    )
    assert (SHARED_MEMORY_MOUNT_NAME, SHARED_MEMORY_MOUNT_PATH) == ("flyte-shared-memory", "/dev/shm")


@pytest.mark.parametrize("size", ["abc", "-1Gi", "1GB"])
def test_v33_invalid_size_is_rejected(size: str) -> None:
    with pytest.raises(InvalidResource, match=f"shared_memory: '{size}' is not a valid Kubernetes quantity"):
        construct_extended_resources(shared_memory=size)


def test_v34_to_v39_accelerators() -> None:
    assert construct_extended_resources(accelerator=T4) == tasks_pb2.ExtendedResources(
        gpu_accelerator=tasks_pb2.GPUAccelerator(device="nvidia-tesla-t4")
    )
    partitioned = construct_extended_resources(accelerator=A100.partition_1g_5gb)
    assert partitioned is not None and partitioned.gpu_accelerator.partition_size == "1g.5gb"
    empty = construct_extended_resources(accelerator=GPUAccelerator(""))
    assert empty is not None and empty.HasField("gpu_accelerator") and not empty.HasField("shared_memory")
    with pytest.raises(AttributeError):
        construct_extended_resources(accelerator="nvidia-tesla-t4")  # type: ignore[arg-type]
    both = construct_extended_resources(accelerator=L4, shared_memory="1Gi")
    assert both is not None and both.gpu_accelerator.device == "nvidia-l4" and both.shared_memory.size_limit == "1Gi"


# --- pod_spec_from_resources -----------------------------------------------------------------------------------------


def _container(spec: Any) -> dict[str, Any]:
    containers: list[dict[str, Any]] = ApiClient().sanitize_for_serialization(spec)["containers"]
    assert len(containers) == 1
    return containers[0]


def test_v40() -> None:
    spec = pod_spec_from_resources(
        "p",
        requests=Resources(cpu="1", mem="1Gi"),
        limits=Resources(cpu="2", mem="4Gi", gpu="1", ephemeral_storage="10Gi"),
    )
    assert _container(spec) == {
        "name": "p",
        "resources": {
            "requests": {"cpu": "1", "memory": "1Gi"},
            "limits": {"cpu": "2", "memory": "4Gi", "nvidia.com/gpu": "1", "ephemeral-storage": "10Gi"},
        },
    }


def test_v41_v46_numbers_are_stringified() -> None:
    # flytekit passes raw numbers (kubernetes client 37 then fails, v46); the engine writes str(v).
    container = _container(pod_spec_from_resources(PRIMARY_CONTAINER_DEFAULT_NAME, Resources(cpu=0.5, mem=1024)))
    assert container["name"] == "primary"
    assert container["resources"] == {
        "requests": {"cpu": "0.5", "memory": "1024"},
        "limits": {"cpu": "0.5", "memory": "1024"},
    }


def test_v42_gpu_key() -> None:
    spec = pod_spec_from_resources("primary", limits=Resources(gpu=2), k8s_gpu_resource_key="amd.com/gpu")
    assert _container(spec)["resources"] == {"requests": {"amd.com/gpu": "2"}, "limits": {"amd.com/gpu": "2"}}


def test_v43_v44_whole_dict_fallback() -> None:
    no_cross_fill = pod_spec_from_resources("primary", Resources(cpu="1"), Resources(mem="4Gi"))
    assert _container(no_cross_fill)["resources"] == {"requests": {"cpu": "1"}, "limits": {"memory": "4Gi"}}
    from_limits = pod_spec_from_resources("primary", Resources(), Resources(cpu="1"))
    assert _container(from_limits)["resources"] == {"requests": {"cpu": "1"}, "limits": {"cpu": "1"}}
    assert _container(pod_spec_from_resources("primary"))["resources"] == {}
    both_empty = pod_spec_from_resources("primary", Resources(), Resources())
    assert _container(both_empty)["resources"] == {"requests": {}, "limits": {}}
    container = pod_spec_from_resources("primary", Resources(cpu="1")).containers[0]
    assert container.resources.requests is not container.resources.limits  # separate dicts


def test_v45_errors() -> None:
    with pytest.raises(ValueError, match="can not be a list or tuple"):
        pod_spec_from_resources("primary", requests=Resources(cpu=("1", "2")))
    with pytest.raises(ValueError, match="name"):
        pod_spec_from_resources(None, requests=Resources(cpu="1"))


# --- webhook additions --------------------------------------------------------------------------------------


def _idl(*entries: tuple[int, str]) -> list[tasks_pb2.Resources.ResourceEntry]:
    return [Entry(name=name, value=value) for name, value in entries]


def test_v71_to_k8s_resource_list() -> None:
    requests = _idl(
        (RN.CPU, "0.5"), (RN.MEMORY, "1024"), (RN.GPU, "1"), (RN.EPHEMERAL_STORAGE, "1Gi"), (RN.STORAGE, "5Gi")
    )
    converted = idl_resources_to_k8s(tasks_pb2.Resources(requests=requests, limits=_idl((RN.CPU, "2"))))
    assert converted == (
        {"cpu": "500m", "memory": "1024", "nvidia.com/gpu": "1", "ephemeral-storage": "1Gi"},
        {"cpu": "2"},
    )
    assert list(converted[0]) == ["cpu", "memory", "nvidia.com/gpu", "ephemeral-storage"]


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        (_idl((RN.CPU, "0"), (RN.MEMORY, "2Gi")), {"memory": "2Gi"}),  # v72: zero dropped
        (_idl((RN.CPU, "0.0"), (RN.MEMORY, "0m")), {}),
        (_idl((RN.CPU, "1"), (RN.CPU, "2")), {"cpu": "2"}),  # last duplicate wins
        (_idl((RN.CPU, "1"), (RN.CPU, "0")), {"cpu": "1"}),  # a zero never overwrites
        (_idl((RN.UNKNOWN, "1"), (RN.STORAGE, "1Gi")), {}),
        (_idl((RN.MEMORY, "1024Mi"), (RN.CPU, "1000m")), {"memory": "1Gi", "cpu": "1"}),
    ],
)
def test_v72_to_k8s_resource_list(entries: list[Any], expected: dict[str, str]) -> None:
    assert idl_resources_to_k8s(tasks_pb2.Resources(requests=entries)) == (expected, {})


def test_v72_gpu_key_and_errors() -> None:
    gpu = tasks_pb2.Resources(limits=_idl((RN.GPU, "1")))
    assert idl_resources_to_k8s(gpu, gpu_key="amd.com/gpu") == ({}, {"amd.com/gpu": "1"})
    with pytest.raises(ValueError) as info:
        idl_resources_to_k8s(tasks_pb2.Resources(requests=_idl((RN.CPU, ""))))
    assert str(info.value) == (
        "Failed to parse resource as a valid quantity.: quantities must match the regular expression "
        "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    )
    with pytest.raises(ValueError, match=r"Failed to parse resource as a valid quantity\.: unable to parse quantity's"):
        idl_resources_to_k8s(tasks_pb2.Resources(limits=_idl((RN.STORAGE, "1K"))))  # parsed even when ignored
    with pytest.raises(ValueError, match=r"quantity\.: '-1' .* must not be negative"):
        idl_resources_to_k8s(tasks_pb2.Resources(limits=_idl((RN.CPU, "-1"))))  # stricter than Flyte
