"""A pod over kopf's former 1 MiB request limit, through the real kube-apiserver and the real webhook.

The apiserver accepts requests up to 3 MiB and etcd stores objects up to ~1.5 MiB; the AdmissionReview wraps
the pod, so an annotated 1.1 MB pod used to fail with `HTTP 500 ... status code 413` while the same pod without
annotations was admitted.
"""

from __future__ import annotations

import pytest

from hack.cluster.clusters import Cluster, dry_run_create, probe_pod

APPLIED = "resources.flyte.org/applied"


@pytest.mark.parametrize("size", [1_100_000, 1_400_000])
def test_an_annotated_pod_of_over_1_mb_is_admitted_and_mutated(cluster: Cluster, namespace: str, size: int):
    pod = probe_pod("large-pod")
    pod["spec"]["containers"][0]["env"] = [{"name": "BIG", "value": "x" * size}]
    stored = dry_run_create(cluster, namespace, pod)
    assert APPLIED in stored["metadata"]["annotations"]
    assert stored["spec"]["containers"][0]["resources"]["requests"]["cpu"] == "100m"
    assert len(stored["spec"]["containers"][0]["env"][0]["value"]) == size
