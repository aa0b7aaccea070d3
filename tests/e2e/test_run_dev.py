"""`run --dev` against a real kube-apiserver: it registers its MutatingWebhookConfiguration before it counts as
up, a failed registration stops it with the apiserver's reason, and a stop signal takes the configuration down.

The dev webhook here reads its own annotation prefix, so its configuration's matchConditions select only this
test's pods and the other tests' pods never reach it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from hack.cluster.clusters import Cluster, LocalCluster, dry_run_create
from hack.cluster.processes import free_port, wait_until

PREFIX = "e2e-dev.flyte.org/"
ROOT = Path(__file__).resolve().parents[2]


def start_dev(cluster: Cluster, log: Path, name: str) -> subprocess.Popen[bytes]:
    argv = [
        sys.executable, "-m", "webhook.cli", "run", "--dev", "--addr=127.0.0.1", f"--port={free_port()}",
        "--probe-addr=127.0.0.1", f"--probe-port={free_port()}", f"--webhook-config-name={name}",
        "--failure-policy=Ignore", "--log-format=plain",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRW_") or k == "FRW_BIN_DIR"}
    env.update(KUBECONFIG=str(cluster.kubeconfig), FRW_ANNOTATION_PREFIX=PREFIX)
    with log.open("wb") as out:
        return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def configuration_exists(cluster: Cluster, name: str) -> bool:
    return cluster.kubectl("get", "mutatingwebhookconfiguration", name).returncode == 0


@pytest.fixture
def local(cluster: Cluster) -> Cluster:
    if not isinstance(cluster, LocalCluster):
        pytest.skip("starts its own webhook process and registers a configuration: local cluster only")
    return cluster


def test_dev_registers_serves_and_removes_its_configuration_on_sigterm(local, namespace, tmp_path):
    name = "frw-dev-e2e"
    process = start_dev(local, tmp_path / "dev.log", name)
    try:
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "dev-probe", "annotations": {PREFIX + "resources": "cpu=250m,mem=64Mi"}},
            "spec": {"containers": [{"name": "main", "image": "busybox"}]},
        }

        def mutated() -> dict | None:
            if process.poll() is not None:
                raise AssertionError(f"run --dev exited {process.returncode}: {(tmp_path / 'dev.log').read_text()}")
            stored = dry_run_create(local, namespace, pod)
            return stored if PREFIX + "applied" in stored["metadata"].get("annotations", {}) else None

        stored = wait_until(mutated, timeout=90, what="a pod mutated through the dev webhook configuration")
        assert stored["spec"]["containers"][0]["resources"]["requests"]["cpu"] == "250m"
        assert configuration_exists(local, name)
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=60)
    assert code == 0, (tmp_path / "dev.log").read_text()[-3000:]
    assert not configuration_exists(local, name), "the dev configuration outlived the process"


def test_dev_registration_refused_by_the_apiserver_stops_run_with_its_reason(local, tmp_path):
    name = "Not_A_Valid_Name"
    process = start_dev(local, tmp_path / "dev.log", name)
    code = process.wait(timeout=120)
    output = (tmp_path / "dev.log").read_text()
    assert code == 1, output[-3000:]
    last = output.strip().splitlines()[-1]
    assert last.startswith("flyte-resources-webhook: cannot register MutatingWebhookConfiguration Not_A_Valid_Name")
    assert "422" in last or "Invalid" in last
    assert not configuration_exists(local, name)
