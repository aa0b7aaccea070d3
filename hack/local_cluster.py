"""`make demo` / `make run`: the webhook on a local cluster that schedules, with examples/ applied and placed.

    python -m hack.local_cluster            # start, apply examples/*.yaml, show where each landed, stop
    python -m hack.local_cluster --full     # the same with each pod before and after (or --diff)
    python -m hack.local_cluster --serve    # the same, then keep serving until Ctrl-C (prints the KUBECONFIG)

The cluster (etcd, kube-apiserver, kube-scheduler, kube-controller-manager, KWOK with the node pools of
hack/cluster/nodepools.yaml), the webhook process and the chart's MutatingWebhookConfiguration (service swapped for
a 127.0.0.1 URL + caBundle) come from the hack.cluster package, the same harness the e2e tests use. Each example
runs under the preset it is written for (`hack.cluster.presets.preset_of`): the chart's default, eks, in the
example's own namespace, confined to the eks nodes by the PodNodeSelector admission plugin; the others (a TPU on
gke, an MI300X on amd) through a webhook of their preset (`hack.cluster.presets`), on that preset's nodes. Binaries
come from `make control-plane` ($FRW_BIN_DIR). Everything listens on 127.0.0.1; every process is stopped by its PID
on exit, on Ctrl-C and on SIGTERM; the logs stay in the run directory, whose path is printed.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import difflib
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # `python hack/local_cluster.py` from anywhere
    sys.path.insert(0, str(REPO_ROOT))

from hack.cluster import placement  # noqa: E402
from hack.cluster.chart import ANNOTATION_PREFIX, APPLIED_ANNOTATION  # noqa: E402 - after the sys.path fix above
from hack.cluster.clusters import LocalCluster  # noqa: E402
from hack.cluster.controlplane import NAMESPACE_NODE_SELECTOR  # noqa: E402
from hack.cluster.live import LiveCluster  # noqa: E402
from hack.cluster.nodepools import load as load_pools  # noqa: E402
from hack.cluster.presets import PresetWebhooks, preset_of  # noqa: E402
from hack.cluster.processes import HarnessError, tail  # noqa: E402

EXAMPLES_DIR = REPO_ROOT / "examples"
FLYTE_ANNOTATIONS = ("primary_container_name",)
DEMO_PRESET = "eks"  # the chart's default preset: the examples' namespaces see only its nodes
CLUSTER_LABEL = load_pools().cluster_label(DEMO_PRESET)
CLUSTER_LABELS = {load_pools().cluster_label(p) for pool in load_pools().pools for p in pool.presets}
SUMMARY_FILE = "showcase.json"  # in the run directory: each example's preset, pool and phase (for tests)
# A CREATE of a new pod, which is what the webhook acts on (an apply of an existing pod is an UPDATE or nothing).
TRY_NAMESPACE = "flytesnacks-development"
TRY_ANNOTATIONS = {
    ANNOTATION_PREFIX + "resources": "cpu=2:4,mem=8Gi,gpu=1",
    ANNOTATION_PREFIX + "accelerator": "A100.partition_1g_5gb",
}


def try_command(name: str) -> list[str]:
    """kubectl arguments that create pod `name` with a server-side dry run: admission runs, nothing is stored."""
    return [
        "run", name, "-n", TRY_NAMESPACE, "--image=busybox", "--restart=Never", "--dry-run=server", "-o", "yaml",
        *(f"--annotations={key}={value}" for key, value in TRY_ANNOTATIONS.items()),
    ]  # fmt: skip


def try_command_text() -> str:
    return "kubectl " + " ".join(try_command("try-$RANDOM")).replace(" --annotations", " \\\n        --annotations")


class Stop(BaseException):
    """SIGINT or SIGTERM arrived (a BaseException, like KeyboardInterrupt, so no `except Exception` eats it)."""


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    raise Stop(signal.Signals(signum).name)


# --------------------------------------------------------------------------------------------- examples


def load_examples(directory: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every Pod in directory/*.yaml (multi-document files and `List`s included), in file order."""
    for path in sorted(directory.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not isinstance(doc, dict):
                continue
            items = doc.get("items") if doc.get("kind") == "List" else [doc]
            for item in items or []:
                if isinstance(item, dict) and item.get("kind") == "Pod":
                    yield path, item


def relevant(pod: dict[str, Any]) -> dict[str, Any]:
    """The parts of a pod the webhook may change: containers' resources and mounts, volumes, placement, and our
    annotations. The two NoExecute tolerations the apiserver adds to every pod are left out."""
    spec = pod.get("spec") or {}
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    view: dict[str, Any] = {
        "annotations": {
            k: _pretty_json(v)
            for k, v in sorted(annotations.items())
            if k.startswith(ANNOTATION_PREFIX) or k in FLYTE_ANNOTATIONS
        },
        "containers": [
            {
                "name": c.get("name"),
                "resources": c.get("resources") or {},
                **({"volumeMounts": c["volumeMounts"]} if c.get("volumeMounts") else {}),
            }
            for c in spec.get("containers") or []
        ],
    }
    for key in ("volumes", "affinity"):
        if spec.get(key):
            view[key] = spec[key]
    # The namespace's PodNodeSelector (or the showcase) adds the preset-cluster label: not the webhook's doing.
    node_selector = {k: v for k, v in (spec.get("nodeSelector") or {}).items() if k not in CLUSTER_LABELS}
    if node_selector:
        view["nodeSelector"] = node_selector
    tolerations = [
        t for t in spec.get("tolerations") or [] if not (t.get("key") or "").startswith("node.kubernetes.io/")
    ]
    if tolerations:
        view["tolerations"] = tolerations
    return view


def _pretty_json(value: str) -> Any:
    """Show JSON annotation values (like the `applied` summary) as structures, others as they are."""
    if value[:1] in "{[":
        with contextlib.suppress(ValueError):
            return json.loads(value)
    return value


def _yaml(obj: Any) -> str:
    return yaml.safe_dump(obj, sort_keys=False, default_flow_style=False, width=110)


def _indent(text: str, prefix: str = "    ") -> str:
    return "".join(prefix + line for line in text.splitlines(keepends=True))


@dataclass
class Shown:
    """One example as applied: where it went and what the apiserver said."""

    source: Path
    preset: str
    namespace: str
    name: str
    admitted: bool
    warnings: list[str]
    denial: str = ""


def showcase_pod(pod: dict[str, Any], preset: str, presets: PresetWebhooks | None) -> dict[str, Any]:
    """The example as the showcase creates it: under eks in its own namespace, under another preset through that
    preset's webhook; without its FlyteWorkflow owner, which does not exist here."""
    body = copy.deepcopy(pod) if preset == DEMO_PRESET or presets is None else presets.pod(pod, preset)
    body["metadata"].pop("ownerReferences", None)
    body["metadata"].setdefault("namespace", "default")
    return body


def apply_example(
    cluster: LocalCluster | LiveCluster, source: Path, pod: dict[str, Any], preset: str, view: str = ""
) -> Shown:
    """Create one example pod with kubectl and read it back; with `view` ("full" or "diff") print before and
    after (or the diff) and the warnings."""
    from kubernetes import client

    name, namespace = pod["metadata"]["name"], pod["metadata"]["namespace"]
    if preset == DEMO_PRESET:
        cluster.ensure_namespace(namespace, annotations={NAMESPACE_NODE_SELECTOR: f"{CLUSTER_LABEL}=true"})
    result = cluster.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(pod))
    warnings = [line.removeprefix("Warning: ") for line in result.stderr.splitlines() if line.startswith("Warning:")]
    shown = Shown(source, preset, namespace, name, result.returncode == 0, warnings)
    if not shown.admitted:
        shown.denial = result.stderr.strip()
    if not view:
        return shown
    print(f"\n=== {source.relative_to(REPO_ROOT)} (preset {preset}): pod {namespace}/{name}")
    before = _yaml(relevant(pod))
    print("--- before\n" + _indent(before), end="")
    if not shown.admitted:
        print("--- DENIED by the apiserver:\n" + _indent(shown.denial))
        return shown
    api = cluster.api_client()
    stored = api.sanitize_for_serialization(client.CoreV1Api(api).read_namespaced_pod(name, namespace))
    after = _yaml(relevant(stored))
    if view == "diff":
        diff = list(difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=1))
        print("--- changes\n" + _indent("\n".join(diff[2:]) + "\n" if diff else "(none)\n"), end="")
    else:
        print("--- after (as stored by the apiserver)\n" + _indent(after), end="")
    print("--- warnings\n" + _indent("".join(f"- {w}\n" for w in warnings) or "(none)\n"), end="")
    if APPLIED_ANNOTATION not in ((stored.get("metadata") or {}).get("annotations") or {}):
        print(f"    (no {APPLIED_ANNOTATION} annotation: the webhook left this pod unchanged)")
    return shown


def print_placements(cluster: LocalCluster | LiveCluster, shown: list[Shown], run_dir: Path, full: bool) -> bool:
    """Wait for the scheduler and KWOK, then show where each example landed (or why it waits); True when every
    admitted example runs on a pool `placements` names for its preset. Writes SUMMARY_FILE in `run_dir`."""
    from kubernetes import client

    core = client.CoreV1Api(cluster.api_client())
    pools = load_pools()
    by_namespace: dict[str, list[str]] = {}
    for item in shown:
        if item.admitted:
            by_namespace.setdefault(item.namespace, []).append(item.name)
    views: dict[tuple[str, str], placement.Placement] = {}
    for namespace, names in by_namespace.items():
        for name, waited in placement.wait(core, namespace, names, timeout=60).items():
            views[namespace, name] = waited
    rows = [("example", "preset", "node", "GPU resource", "phase")]
    summary: list[dict[str, Any]] = []
    fitting = True
    for item in shown:
        view = views.get((item.namespace, item.name))
        expected = pools.expected(item.source.name, item.preset)
        fitting = fitting and view is not None and view.running and view.pool in expected
        phase = "DENIED" if view is None else view.phase if view.running or not view.reason else "Pending"
        gpu = ", ".join(f"{k}: {v}" for k, v in (view.accelerators if view else {}).items()) or "-"
        rows.append((item.source.name, item.preset, (view.node or "-") if view else "-", gpu, phase))
        summary.append(
            {
                "example": item.source.name,
                "preset": item.preset,
                "pool": view.pool if view else None,
                "expected": list(expected),
                "phase": phase,
                "warnings": item.warnings,
            }
        )
    (run_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    placed = sum(1 for entry in summary if entry["phase"] == "Running" and entry["pool"] in entry["expected"])
    print(
        f"\n{placed} of {len(shown)} examples running on a node that fits them, each under the preset it is written "
        "for (nodes: hack/cluster/nodepools.yaml, run by KWOK):\n" + "\n".join(lines),
        flush=True,
    )
    for item in shown:
        if item.denial:
            print(f"  {item.source.name}: denied: {item.denial.splitlines()[-1][:200]}")
    for (_, name), waited in views.items():
        if not waited.running and waited.reason:
            print(f"  {name}: {waited.reason[:200]}")
    warned = [(item.source.name, w) for item in shown for w in item.warnings]
    if warned and not full:
        print(f"warnings (what changed a request; routine fills are in {APPLIED_ANNOTATION}):")
        for example, warning in warned[:4]:
            print(f"  {example}: {warning[:150]}")
        if len(warned) > 4:
            print(f"  ... {len(warned) - 4} more; every pod before and after: make run DEMO_ARGS=--full")
    return fitting


# --------------------------------------------------------------------------------------------- main


def serve_forever(cluster: LocalCluster | LiveCluster, presets: PresetWebhooks | None) -> None:
    """Print how to reach the cluster, then wait for Ctrl-C or for a part of it to die."""
    assert cluster.control_plane is not None
    if isinstance(cluster, LiveCluster):
        assert cluster.node is not None
        pods = ", ".join(f"{p['metadata']['name']} {p['status']['podIP']}" for p in cluster.webhook_pods())
        serving = (
            f"the chart (helm release {cluster.release}, namespace {cluster.namespace}) on the real node: pods "
            f"{pods}; container logs in {cluster.node.pod_logs}"
        )
        watched = [*cluster.control_plane.processes, cluster.node]
    else:
        assert cluster.webhook is not None
        serving = f"the webhook {cluster.webhook.url}/flyte-resources behind the chart's MutatingWebhookConfiguration"
        watched = [*cluster.control_plane.processes, *([cluster.webhook.process] if cluster.webhook.process else [])]
    others = f"; presets {', '.join(presets.hooks)} by a webhook each" if presets and presets.hooks else ""
    print(
        f"""
Serving {serving}{others}. In another shell (a new pod: the webhook acts on CREATE):

    export KUBECONFIG={cluster.kubeconfig}
    {try_command_text()}

apiserver {cluster.control_plane.server}; logs in {cluster.run_dir}. Ctrl-C stops everything.""",
        flush=True,
    )
    while True:
        for process in watched:
            if reason := process.exited():
                raise HarnessError(reason)
        if presets is not None and (reason := presets.exited()):
            raise HarnessError(reason)
        time.sleep(1)


def start_live(run_dir: Path, namespaces: list[str]) -> LiveCluster:
    """The local cluster with the chart installed by `helm install --wait` (hack.cluster.live); the examples'
    namespaces are made first, since pods wait for their `default` ServiceAccount there."""
    started = time.monotonic()
    print(f"starting the local cluster and its real node: kubelet + containerd (logs in {run_dir}) ...", flush=True)
    cluster = LiveCluster(run_dir)
    try:
        cluster.start()
        steps = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in cluster.timings.items())
        print(f"cluster ready in {time.monotonic() - started:.1f} s ({steps}); helm install --wait ...", flush=True)
        install = cluster.install()
        print(
            f"serving {time.monotonic() - started:.1f} s after start (helm install --wait: {install:.1f} s): the "
            "chart's pods run on the real node from the image built here, the apiserver calls them through the "
            "chart's Service",
            flush=True,
        )
        for namespace in namespaces:
            cluster.ensure_namespace(namespace, annotations={NAMESPACE_NODE_SELECTOR: f"{CLUSTER_LABEL}=true"})
            cluster.wait_default_service_account(namespace)
        cluster.wait_default_service_account(cluster.namespace)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def start_local(run_dir: Path) -> LocalCluster:
    started = time.monotonic()
    print(
        "starting etcd, kube-apiserver, kube-scheduler, kube-controller-manager, kwok and the webhook "
        f"(logs in {run_dir}) ...",
        flush=True,
    )
    cluster = LocalCluster(run_dir)
    cluster.start()
    print(f"ready in {time.monotonic() - started:.1f} s: the chart's MutatingWebhookConfiguration is live", flush=True)
    return cluster


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hack.local_cluster", description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", action="store_true", help="keep serving after the examples, until Ctrl-C")
    parser.add_argument("--examples", type=Path, default=EXAMPLES_DIR, help="directory of Pod manifests (*.yaml)")
    parser.add_argument(
        "--run-dir", type=Path, help="where logs, certificates and the kubeconfig go (default: a new temp dir)"
    )
    parser.add_argument("--full", action="store_true", help="show each pod before and after, and its warnings")
    parser.add_argument("--diff", action="store_true", help="show each pod's changes as a diff (implies --full)")
    parser.add_argument(
        "--live-chart",
        action="store_true",
        help="install the chart with helm (its pods on a real kubelet + containerd node, from `make images`; root)",
    )
    args = parser.parse_args(argv)

    examples = [(path, pod, preset_of(path.name)) for path, pod in load_examples(args.examples)]
    if not examples:
        print(f"no Pod manifests in {args.examples}/*.yaml", file=sys.stderr)
        return 2
    run_dir = args.run_dir or Path(tempfile.mkdtemp(prefix="frw-local-"))
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    view = "diff" if args.diff else "full" if args.full else ""

    cluster: LocalCluster | LiveCluster | None = None
    presets: PresetWebhooks | None = None
    failed = False
    try:
        eks_namespaces = [pod["metadata"].get("namespace") or "default" for _, pod, p in examples if p == DEMO_PRESET]
        cluster = start_live(run_dir, list(dict.fromkeys(eks_namespaces))) if args.live_chart else start_local(run_dir)
        others = list(dict.fromkeys(p for *_, p in examples if p != DEMO_PRESET))
        if others:
            started = time.monotonic()
            presets = PresetWebhooks(cluster, cluster.namespace).start(others)
            print(f"a webhook each for {', '.join(others)} in {time.monotonic() - started:.1f} s", flush=True)
        shown = [apply_example(cluster, path, showcase_pod(pod, p, presets), p, view) for path, pod, p in examples]
        failed = not print_placements(cluster, shown, run_dir, bool(view))
        if args.serve:
            serve_forever(cluster, presets)
    except Stop as stop:
        print(f"\n{stop}: stopping", file=sys.stderr)
    except HarnessError as exc:
        failed = True
        print(f"error: {exc}", file=sys.stderr)
        if cluster is not None:
            logs = {**cluster.log_files(), **(presets.log_files() if presets else {})}
            for name, path in logs.items():
                print(f"----- {name}: end of {path}\n{tail(path, 30)}", file=sys.stderr)
    finally:
        # Ignore further signals while the children stop, so a second Ctrl-C cannot leave one behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if presets is not None:
            presets.stop()
        if cluster is not None:
            cluster.stop()
        print(f"logs kept in {run_dir}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
