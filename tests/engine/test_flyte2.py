"""Flyte 2's accelerator forms (`GPU`, `TPU`, `Neuron`, `AMD_GPU`, `HABANA_GAUDI`, `"<Type>:<count>"`)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from webhook.engine.accelerators import Accelerator
from webhook.engine.catalog import DeviceClass
from webhook.engine.flyte2 import AMD_GPU, GPU, HABANA_GAUDI, TPU, Device, Neuron, device, parse_accelerator

GPU_TYPES = (
    "A2, A10, A10G, A100, A100_80G, B200, H100, H200, L4, L40s, T4, V100, RTX_PRO_4500, RTX_PRO_6000, GB10, "
    "T4 shared, L4 shared, A10G shared, A10 shared, L40S shared"
)


@pytest.mark.parametrize(
    ("made", "expected", "accelerator"),
    [
        (GPU("A100", 2), Device(2, DeviceClass.NVIDIA_GPU, "A100"), Accelerator("nvidia-tesla-a100")),
        (
            GPU("H100", 1, partition="1g.10gb"),
            Device(1, DeviceClass.NVIDIA_GPU, "H100", "1g.10gb"),
            Accelerator("nvidia-h100", "1g.10gb"),
        ),
        (GPU("A100 80G", 8), Device(8, DeviceClass.NVIDIA_GPU, "A100_80G"), Accelerator("nvidia-a100-80gb")),
        (GPU("H200", 1, "7g.141gb"), Device(1, DeviceClass.NVIDIA_GPU, "H200", "7g.141gb"), None),
        (TPU("V6E", "2x4"), Device(1, DeviceClass.GOOGLE_TPU, "V6E", "2x4"), Accelerator("tpu-v6e-slice", "2x4")),
        (TPU("V5P", "2x2x1"), Device(1, DeviceClass.GOOGLE_TPU, "V5P", "2x2x1"), None),
        (Neuron("Trn1"), Device(1, DeviceClass.AMAZON_NEURON, "Trn1"), Accelerator("aws-neuron-trn1")),
        (AMD_GPU("MI300X"), Device(1, DeviceClass.AMD_GPU, "MI300X"), Accelerator("amd-mi300x")),
        (HABANA_GAUDI("Gaudi1"), Device(1, DeviceClass.HABANA_GAUDI, "Gaudi1"), Accelerator("habana-gaudi-dl1")),
        (parse_accelerator("A100:2"), Device(2, DeviceClass.NVIDIA_GPU, "A100"), None),
        (parse_accelerator("L40s:1"), Device(1, DeviceClass.NVIDIA_GPU, "L40s"), Accelerator("nvidia-l40s")),
        (parse_accelerator("Trn1:16"), Device(16, DeviceClass.AMAZON_NEURON, "Trn1"), None),
        (parse_accelerator("T4 shared:1"), Device(1, DeviceClass.NVIDIA_GPU, "T4 shared"), None),
        (parse_accelerator("RTX PRO 6000:2"), Device(2, DeviceClass.NVIDIA_GPU, "RTX_PRO_6000"), None),
        (parse_accelerator("MI300X:1"), Device(1, DeviceClass.AMD_GPU, "MI300X"), None),
        (device("V6E", partition="2x4"), Device(1, DeviceClass.GOOGLE_TPU, "V6E", "2x4"), None),
        (device("H100", 1, "1g.10gb", "GPU"), Device(1, DeviceClass.NVIDIA_GPU, "H100", "1g.10gb"), None),
    ],
)
def test_valid_forms(made: Device, expected: Device, accelerator: Accelerator | None) -> None:
    assert made == expected
    if accelerator is not None:
        assert made.accelerator() == Accelerator(
            accelerator.device, accelerator.partition_size, device_class=expected.device_class
        )
    assert Device(2, DeviceClass.NVIDIA_GPU).accelerator() is None  # `gpu=2`: a count, no placement


@pytest.mark.parametrize(
    ("make", "message"),
    [
        # Flyte 2's own errors
        (lambda: GPU("A999", 1), f"Invalid GPU type: A999. Must be one of {GPU_TYPES}"),
        (lambda: GPU("A100", 0), "GPU quantity must be at least 1"),
        (
            lambda: GPU("A100", 1, "1g.10gb"),
            "Invalid partition for A100: 1g.10gb. Must be one of 1g.5gb, 2g.10gb, 3g.20gb, 4g.20gb, 7g.40gb",
        ),
        (
            lambda: GPU("H100", 1, "1g.5gb"),
            "Invalid partition for H100: 1g.5gb. Must be one of 1g.10gb, 1g.20gb, 2g.20gb, 3g.40gb, 4g.40gb, 7g.80gb",
        ),
        (
            lambda: GPU("T4 shared", 1, "1g.5gb"),
            "A shared GPU takes no partition, got '1g.5gb' for T4 shared. Request a plain device to use a MIG "
            "partition.",
        ),
        (lambda: TPU("V4"), "Invalid TPU type: V4. Must be one of V5E, V5P, V6E"),
        (lambda: TPU("V5P", "2x4"), "Invalid partition for V5P: 2x4. Must be one of 2x2x1, 2x2x2, 2x4x4,"),
        (lambda: Neuron("Trn3"), "Invalid Neuron type: Trn3. Must be one of Inf1, Inf2, Trn1, Trn1n, Trn2, Trn2u"),
        (lambda: AMD_GPU("MI50"), "Invalid AMD GPU type: MI50. Must be one of MI100, MI210,"),
        (lambda: HABANA_GAUDI("Gaudi2"), "Invalid Habana Gaudi type: Gaudi2. Must be one of Gaudi1"),
        (lambda: parse_accelerator("A100:1000"), "'A100:1000': A100 comes in counts of 1 to 999"),
        (lambda: parse_accelerator("Trn1:3"), "'Trn1:3': Trn1 comes in counts of 1, 4, 8, 16"),
        (lambda: parse_accelerator("Trn1:2"), "'Trn1:2': Trn1 comes in counts of 1, 4, 8, 16"),
        (lambda: parse_accelerator("A100"), "'A100': a Flyte 2 accelerator needs a count, e.g. 'A100:1'"),
        (lambda: parse_accelerator("a100:1"), "'a100:1' is not a Flyte 2 accelerator: did you mean A100,"),
        (lambda: parse_accelerator("H10:2"), "'H10:2' is not a Flyte 2 accelerator: did you mean H100, A10? 'H10'"),
        (lambda: parse_accelerator("V6E:1"), "'V6E:1' is not a Flyte 2 accelerator"),  # TPUs only as TPU(...)
        # stricter than Flyte 2, which accepts these and builds a pod no node can run
        (lambda: GPU("T4", 1, "1g.5gb"), "T4 has no partitions (partitions exist for A100, A100_80G, H100,"),
        (lambda: GPU("A100", 1000), "A100: quantity 1000 is more than any node has (at most 999 read)"),
        (
            lambda: device("V6E", device_class="GPU"),
            f"Invalid GPU type: V6E. Must be one of {GPU_TYPES} (V6E is a TPU)",
        ),
        (lambda: device("K80"), "Invalid GPU type: K80."),  # a flytekit constant, not a Flyte 2 type
        (lambda: device("A100", True), "A100: quantity must be a whole number, got True"),  # type: ignore[arg-type]
        (lambda: device("A100", device_class="FPGA"), "'FPGA' is not a device class"),
    ],
)
def test_invalid_forms(make: Callable[[], Device], message: str) -> None:
    with pytest.raises(ValueError) as error:
        make()
    assert str(error.value).startswith(message)


def test_messages_stay_short_for_long_input() -> None:
    with pytest.raises(ValueError) as error:
        parse_accelerator("A" * 5000 + ":1")
    assert len(str(error.value)) < 1200
