"""Small Flyte workflows the e2e tests run through real flytepropeller (tests/e2e/test_flyte.py).

Serialized with flytekit 1.16 (`pyflyte --pkgs workflows serialize workflows`), compiled by propeller's own
compiler into FlyteWorkflow objects. No task code runs: KWOK completes the pods, so the tasks have no outputs
(a task with outputs would fail with OutputsNotFound).
"""

from flytekit import PodTemplate, Resources, map_task, task, workflow
from flytekit.extras.accelerators import T4

ANNOTATED = PodTemplate(
    annotations={
        "resources.flyte.org/accelerator": "A100.partition_1g_5gb",
        "resources.flyte.org/resources": "cpu=2,mem=4Gi,gpu=1",
    }
)
OVERRIDE = PodTemplate(
    annotations={
        "resources.flyte.org/accelerator": "nvidia-tesla-a100",
        "resources.flyte.org/resources": "cpu=3,mem=6Gi,gpu=2",
    }
)


@task
def plain(n: int) -> None:
    print(n)


@task(pod_template=ANNOTATED)
def templated() -> None:
    print("templated")


@task(requests=Resources(cpu="1", mem="1Gi", gpu="1"), limits=Resources(cpu="2", mem="2Gi", gpu="1"), accelerator=T4)
def on_t4() -> None:
    print("on a T4, unless annotations say otherwise")


@workflow
def plain_wf() -> None:
    plain(n=1)


@workflow
def pod_template_wf() -> None:
    templated()


@workflow
def overrides_wf() -> None:
    plain(n=2).with_overrides(pod_template=OVERRIDE)


@workflow
def own_resources_wf() -> None:
    on_t4()


@workflow
def map_wf() -> None:
    map_task(plain)(n=[1, 2, 3])
