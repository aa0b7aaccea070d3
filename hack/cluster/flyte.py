"""Real Flyte on the local cluster: flytepropeller runs FlyteWorkflow objects, its task pods pass the webhook.

What runs for real: flytepropeller v1.16.8 (`hack/flyte-propeller.sh`: the controller with the container, pod and
map-task plugins), propeller's own workflow compiler (`kubectl-flyte create --dry-run`), and flytekit 1.16, which
serializes the workflows of `examples/flyte/workflows.py` in its own virtualenv (`make flytekit`; its botocore pins
python-dateutil < 3, which the project's kubernetes client does not accept).

What stands in for what:

* flyteadmin: `flyte_workflow()` puts on the compiled object what flyteadmin's `PrepareFlyteWorkflow` would: the
  execution's annotations and labels, and the platform task resources (flyteadmin's default `task_resources`);
  registration (project, domain, version on every identifier) is done by `hack/flytekit_closures.py`;
* blob storage: a local directory (flytestdlib's stow `local` kind);
* kubelets: KWOK. Its `pod-complete-flyte` stage (`hack.cluster.kwok`) turns a Running pod owned by a
  FlyteWorkflow and labelled `e2e.flyte.org/kwok-complete: "true"` (the label goes on the execution, propeller
  copies it onto its pods) into Succeeded, so executions end; no task code runs. A task without outputs succeeds
  when its pod completes (propeller looks only for an error file); one declaring outputs would fail with
  OutputsNotFound, so the example tasks return nothing.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hack.cluster.kwok import FLYTE_COMPLETE_LABEL as KWOK_COMPLETE_LABEL
from hack.cluster.processes import REPO_ROOT, HarnessError, MissingBinaries, Process, free_port, wait_until

FLYTE_VERSION = os.environ.get("FLYTE_VERSION", "v1.16.8")
FLYTEKIT_VENV = Path(os.environ.get("FRW_FLYTEKIT_VENV") or REPO_ROOT / ".venv-flytekit")
WORKFLOWS_DIR = REPO_ROOT / "examples" / "flyte"
CRD = "flyteworkflows.flyte.lyft.com"
PROJECT, DOMAIN, VERSION = "flytesnacks", "development", "e2e"
IMAGE = "busybox:1.36"  # never pulled: KWOK runs no containers

# flyteadmin's default `task_resources` (its config: defaults cpu 2, memory 200Mi; limits cpu 2, memory 1Gi, gpu 1),
# which it writes into every FlyteWorkflow's executionConfig; propeller clamps task resources to the limits.
PLATFORM_REQUESTS = {"CPU": "2", "Memory": "200Mi"}
PLATFORM_LIMITS = {"CPU": "2", "Memory": "1Gi", "GPU": "1"}

# FlyteWorkflow .status.phase (v1alpha1.WorkflowPhase)
PHASES = ("Ready", "Running", "Succeeding", "Success", "Failing", "Failed", "Aborted", "HandlingFailureNode")
FINAL_PHASES = ("Success", "Failed", "Aborted")


def flyte_bin_dir() -> Path:
    """`$FRW_FLYTE_BIN_DIR`, else the versioned cache `hack/flyte-propeller.sh` fills."""
    if os.environ.get("FRW_FLYTE_BIN_DIR"):
        return Path(os.environ["FRW_FLYTE_BIN_DIR"]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "flyte-resources-webhook" / f"flyte-{FLYTE_VERSION}"


@dataclass(frozen=True)
class FlyteTools:
    propeller: Path
    kubectl_flyte: Path
    flytekit_python: Path

    @classmethod
    def locate(cls) -> FlyteTools:
        directory = flyte_bin_dir()
        tools = cls(directory / "flytepropeller", directory / "kubectl-flyte", FLYTEKIT_VENV / "bin" / "python")
        missing = [str(p) for p in (tools.propeller, tools.kubectl_flyte, tools.flytekit_python) if not p.exists()]
        if missing:
            raise MissingBinaries(
                f"missing {', '.join(missing)}: run `make flyte` (builds flytepropeller {FLYTE_VERSION} and "
                "kubectl-flyte into the binary cache, and creates the flytekit virtualenv)"
            )
        return tools


def _run(argv: list[str], what: str, **kwargs: Any) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=300, **kwargs)
    if result.returncode != 0:
        raise HarnessError(f"{what} failed ({' '.join(argv)}):\n{result.stdout}\n{result.stderr}")
    return result.stdout


def serialize(tools: FlyteTools, out_dir: Path) -> dict[str, Path]:
    """`pyflyte serialize workflows` of examples/flyte/workflows.py, then one WorkflowClosure file per workflow
    (registered as PROJECT/DOMAIN/VERSION). Returns {workflow name: closure path}."""
    out_dir.mkdir(parents=True, exist_ok=True)
    pyflyte = tools.flytekit_python.parent / "pyflyte"
    _run(
        [str(pyflyte), "--pkgs", "workflows", "serialize", "--image", IMAGE, "workflows", "-f", str(out_dir)],
        "pyflyte serialize",
        cwd=WORKFLOWS_DIR,
    )
    names = _run(
        [str(tools.flytekit_python), str(REPO_ROOT / "hack" / "flytekit_closures.py"), str(out_dir), PROJECT, DOMAIN,
         VERSION],
        "hack/flytekit_closures.py",
    ).split()  # fmt: skip
    return {name: out_dir / f"{name}.closure.pb" for name in names}


def execution_name() -> str:
    """A name like flyteadmin's: a letter and 19 lowercase alphanumerics."""
    return "f" + secrets.token_hex(10)[:19]


def namespace_of(project: str = PROJECT, domain: str = DOMAIN) -> str:
    """flyteadmin's default namespace mapping: `{project}-{domain}`."""
    return f"{project}-{domain}"


def flyte_workflow(
    tools: FlyteTools,
    closure: Path,
    *,
    name: str,
    namespace: str,
    annotations: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    work_dir: Path,
) -> dict[str, Any]:
    """The FlyteWorkflow object of one execution: compiled by propeller's compiler (`kubectl-flyte create
    --dry-run`), then given what flyteadmin's PrepareFlyteWorkflow adds (execution annotations and labels,
    platform task resources). The label that lets KWOK complete its pods is always added."""
    inputs = work_dir / "empty-inputs.pb"  # an empty core.LiteralMap: the example workflows take no inputs
    inputs.write_bytes(b"")
    dummy = work_dir / "offline.kubeconfig"  # kubectl-flyte builds a client even for --dry-run; it is not used
    dummy.write_text(
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "users: [{name: u, user: {token: unused}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\n"
        "current-context: c\n"
    )
    out = _run(
        [str(tools.kubectl_flyte), "create", f"--kubeconfig={dummy}", "--dry-run", "-p", str(closure), "-f", "proto",
         "-i", str(inputs), "--execution-id", name, "-n", namespace],
        "kubectl-flyte create --dry-run",
    )  # fmt: skip
    marker = "Printing the compiled workflow."
    if marker not in out:
        raise HarnessError(f"kubectl-flyte printed no workflow:\n{out}")
    wf: dict[str, Any] = yaml.safe_load(out.split(marker, 1)[1])
    wf["kind"] = "FlyteWorkflow"  # kubectl-flyte's dry run prints "flyteworkflow", which the API server refuses
    meta = wf["metadata"]
    meta["annotations"] = {**(meta.get("annotations") or {}), **(annotations or {})}
    meta["labels"] = {**(meta.get("labels") or {}), **(labels or {}), KWOK_COMPLETE_LABEL: "true"}
    resources = wf["executionConfig"]["TaskResources"]
    resources["Requests"].update(PLATFORM_REQUESTS)
    resources["Limits"].update(PLATFORM_LIMITS)
    wf["acceptedAt"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return wf


def propeller_config(
    kubeconfig: Path, storage_dir: Path, events_file: Path, prof_port: int, admin_port: int
) -> dict[str, Any]:
    """Propeller's configuration: every namespace, no flyteadmin (events to a file, no launch-plan launcher), no
    cache service, blob storage in `storage_dir`, the FlyteWorkflow CRD created at start-up."""
    return {
        "propeller": {
            "kube-config": str(kubeconfig),
            "create-flyteworkflow-crd": True,
            "limit-namespace": "all",
            "workers": 4,
            "workflow-reeval-duration": "2s",
            "downstream-eval-duration": "2s",
            "rawoutput-prefix": "file://flyte/raw",
            "metadata-prefix": "metadata/propeller",
            "prof-port": prof_port,
            "enable-admin-launcher": False,
            "publish-k8s-events": False,
            "leader-election": {"enabled": False},
        },
        "tasks": {
            "task-plugins": {
                "enabled-plugins": ["container", "sidecar", "k8s-array"],
                "default-for-task-types": {
                    "container": "container",
                    "sidecar": "sidecar",
                    "container_array": "k8s-array",
                },
            },
        },
        "storage": {
            "type": "stow",
            "stow": {"kind": "local", "config": {"path": str(storage_dir)}},
            "container": "flyte",
            "limits": {"maxDownloadMBs": 10},
        },
        "event": {"type": "file", "file-path": str(events_file), "rate": 500, "capacity": 1000},
        "catalog-cache": {"type": "noop"},
        # Propeller always builds an admin client (gRPC, which connects lazily); nothing here calls it.
        "admin": {"endpoint": f"dns:///127.0.0.1:{admin_port}", "insecure": True},
        "logger": {"level": 4, "show-source": False},
    }


class Propeller:
    """flytepropeller against `kubeconfig`'s cluster; `start()` returns once the FlyteWorkflow CRD serves."""

    def __init__(self, run_dir: Path, tools: FlyteTools, kubeconfig: Path, kubectl: Any) -> None:
        self.run_dir = run_dir / "flyte"
        self.tools = tools
        self.kubeconfig = kubeconfig
        self.kubectl = kubectl  # Cluster.kubectl
        self.storage_dir = self.run_dir / "blobs"
        self.events_file = self.run_dir / "events.log"
        self.process: Process | None = None

    def start(self) -> Propeller:
        self.storage_dir.mkdir(parents=True, exist_ok=True)
        config = self.run_dir / "propeller.yaml"
        cfg = propeller_config(self.kubeconfig, self.storage_dir, self.events_file, free_port(), free_port())
        config.write_text(yaml.safe_dump(cfg, sort_keys=False))
        self.process = Process(
            "flytepropeller", [str(self.tools.propeller), f"--config={config}"], self.run_dir / "flytepropeller.log"
        )
        self.process.start()

        def established() -> bool:
            result = self.kubectl(
                "get", "crd", CRD, "-o", "jsonpath={.status.conditions[?(@.type=='Established')].status}"
            )
            return result.returncode == 0 and result.stdout == "True"

        wait_until(established, timeout=60, what=f"flytepropeller to create the {CRD} CRD", alive=self.process.exited)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def run(self, wf: Mapping[str, Any], *, timeout: float = 90) -> dict[str, Any]:
        """Create the FlyteWorkflow and wait for a final phase; returns the object as it ended (or as it was after
        `timeout` seconds: the caller's assertion on its phase then shows where it stopped)."""
        namespace, name = wf["metadata"]["namespace"], wf["metadata"]["name"]
        result = self.kubectl("create", "-f", "-", input=json.dumps(wf))
        if result.returncode != 0:
            raise HarnessError(f"cannot create FlyteWorkflow {namespace}/{name}: {result.stderr}")

        deadline = time.monotonic() + timeout
        while True:
            got = self.kubectl("get", "flyteworkflow", "-n", namespace, name, "-o", "json")
            if got.returncode != 0:
                raise HarnessError(f"cannot read FlyteWorkflow {namespace}/{name}: {got.stderr}")
            obj: dict[str, Any] = json.loads(got.stdout)
            if phase(obj) in FINAL_PHASES or time.monotonic() > deadline:
                return obj
            if self.process is not None and (reason := self.process.exited()):
                raise HarnessError(reason)
            time.sleep(0.5)


def phase(wf: Mapping[str, Any]) -> str:
    number = int((wf.get("status") or {}).get("phase", 0))
    return PHASES[number] if 0 <= number < len(PHASES) else str(number)


def error_message(wf: Mapping[str, Any]) -> str:
    """The execution's error as Flyte reports it (kind, code and message), or its status message."""
    status = wf.get("status") or {}
    err = status.get("error") or {}
    return " ".join(str(err.get(k, "")) for k in ("kind", "code", "message")).strip() or str(status.get("message", ""))
