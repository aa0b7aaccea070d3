"""`make demo` / `make run`: the webhook on a local cluster that schedules, with examples/ applied.

    python -m hack.local_cluster            # start, apply examples/*.yaml, show each pod before/after and where
                                            # it landed, stop
    python -m hack.local_cluster --serve    # the same, then keep serving until Ctrl-C (prints the KUBECONFIG)

The cluster (etcd, kube-apiserver, kube-scheduler, kube-controller-manager, KWOK with the node pools of
hack/cluster/nodepools.yaml), the webhook process and the chart's MutatingWebhookConfiguration (service swapped for
a 127.0.0.1 URL + caBundle) come from the hack.cluster package, the same harness the e2e tests use. The examples'
namespaces are confined to the eks preset's nodes (the chart's default preset) by the PodNodeSelector admission
plugin. Binaries come from `make control-plane` ($FRW_BIN_DIR). Everything listens on 127.0.0.1; every process is
stopped by its PID on exit, on Ctrl-C and on SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
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
from hack.cluster.processes import HarnessError, tail  # noqa: E402

EXAMPLES_DIR = REPO_ROOT / "examples"
FLYTE_ANNOTATIONS = ("primary_container_name",)
DEMO_PRESET = "eks"  # the chart's default preset: the examples' namespaces see only its nodes
CLUSTER_LABEL = load_pools().cluster_label(DEMO_PRESET)


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
    # The namespace's PodNodeSelector adds the preset-cluster label: not the webhook's doing, so not shown.
    node_selector = {k: v for k, v in (spec.get("nodeSelector") or {}).items() if k != CLUSTER_LABEL}
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


def apply_example(cluster: LocalCluster, source: Path, pod: dict[str, Any], show_diff: bool = False) -> bool:
    """Apply one example pod with kubectl, read it back, print before and after (or the diff) and the warnings."""
    from kubernetes import client

    name = pod["metadata"]["name"]
    namespace = pod["metadata"].get("namespace") or "default"
    cluster.ensure_namespace(namespace, annotations={NAMESPACE_NODE_SELECTOR: f"{CLUSTER_LABEL}=true"})
    print(f"\n=== {source.relative_to(REPO_ROOT)}: pod {namespace}/{name}")
    before = _yaml(relevant(pod))
    print("--- before\n" + _indent(before), end="")
    result = cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(pod))
    if result.returncode != 0:
        print("--- DENIED by the apiserver:\n" + _indent(result.stderr.strip()))
        return False
    api = cluster.api_client()
    stored = api.sanitize_for_serialization(client.CoreV1Api(api).read_namespaced_pod(name, namespace))
    after = _yaml(relevant(stored))
    if show_diff:
        diff = list(difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=1))
        print("--- changes\n" + _indent("\n".join(diff[2:]) + "\n" if diff else "(none)\n"), end="")
    else:
        print("--- after (as stored by the apiserver)\n" + _indent(after), end="")
    warnings = [line.removeprefix("Warning: ") for line in result.stderr.splitlines() if line.startswith("Warning:")]
    print("--- warnings\n" + _indent("".join(f"- {w}\n" for w in warnings) or "(none)\n"), end="")
    if APPLIED_ANNOTATION not in ((stored.get("metadata") or {}).get("annotations") or {}):
        print(f"    (no {APPLIED_ANNOTATION} annotation: the webhook left this pod unchanged)")
    return True


def print_placements(cluster: LocalCluster, examples: list[tuple[Path, dict[str, Any]]]) -> None:
    """Wait for the scheduler and KWOK, then show where each example landed (or why it waits)."""
    from kubernetes import client

    core = client.CoreV1Api(cluster.api_client())
    by_namespace: dict[str, list[str]] = {}
    titles = {}
    for path, pod in examples:
        namespace = pod["metadata"].get("namespace") or "default"
        by_namespace.setdefault(namespace, []).append(pod["metadata"]["name"])
        titles[pod["metadata"]["name"]] = path.name
    views = []
    for namespace, names in by_namespace.items():
        # Without the scheduler's answer in a few seconds, a pod counts as Pending and its reason is shown.
        views += list(placement.wait(core, namespace, names, expect_pending=names, timeout=30).values())
    print(
        f"\n=== where the examples landed (preset {DEMO_PRESET}: the chart's default; nodes from "
        "hack/cluster/nodepools.yaml, run by KWOK)\n"
        + placement.table(views, titles)
        + "\n(Pending: no eks node has that hardware, or no toleration for its taint; the scheduler's reason is"
        " shown. Where each example should land under each preset: `placements` in hack/cluster/nodepools.yaml.)",
        flush=True,
    )


# --------------------------------------------------------------------------------------------- main


def serve_forever(cluster: LocalCluster) -> None:
    assert cluster.webhook is not None and cluster.control_plane is not None
    print(
        f"""
The webhook is serving. In another shell:

    export KUBECONFIG={cluster.kubeconfig}
    kubectl get pods -A
    kubectl apply -f examples/shared-memory.yaml --dry-run=server -o yaml
    curl -s {cluster.webhook.probe_url}/metrics | grep flyte_resources_webhook_reviews_total

apiserver {cluster.control_plane.server}, webhook {cluster.webhook.url}/flyte-resources
logs in {cluster.run_dir}. Ctrl-C stops everything.""",
        flush=True,
    )
    watched = [*cluster.control_plane.processes, *([cluster.webhook.process] if cluster.webhook.process else [])]
    while True:
        for process in watched:
            if reason := process.exited():
                raise HarnessError(reason)
        time.sleep(1)


def serve_live_forever(cluster: LiveCluster) -> None:
    """`--live-chart`: the chart's pods serve; stop on Ctrl-C or when a part of the cluster dies."""
    assert cluster.control_plane is not None and cluster.node is not None
    pods = ", ".join(f"{p['metadata']['name']} {p['status']['podIP']}" for p in cluster.webhook_pods())
    print(
        f"""
The chart is installed (helm release {cluster.release} in namespace {cluster.namespace}); its pods serve
through the Service: {pods}. In another shell:

    export KUBECONFIG={cluster.kubeconfig}
    {cluster.helm_bin} status {cluster.release} -n {cluster.namespace}
    kubectl get pods,endpointslices -n {cluster.namespace} -o wide
    kubectl apply -f examples/shared-memory.yaml --dry-run=server -o yaml

apiserver {cluster.control_plane.server}; logs in {cluster.run_dir} (node/: kubelet, containerd), container
logs in {cluster.node.pod_logs}. Ctrl-C stops everything.""",
        flush=True,
    )
    while True:
        for process in cluster.control_plane.processes:
            if reason := process.exited():
                raise HarnessError(reason)
        if reason := cluster.node.exited():
            raise HarnessError(reason)
        time.sleep(1)


def start_live(run_dir: Path, examples: list[tuple[Path, dict[str, Any]]]) -> LiveCluster:
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
        for namespace in dict.fromkeys(pod["metadata"].get("namespace") or "default" for _, pod in examples):
            cluster.ensure_namespace(namespace, annotations={NAMESPACE_NODE_SELECTOR: f"{CLUSTER_LABEL}=true"})
            cluster.wait_default_service_account(namespace)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hack.local_cluster", description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", action="store_true", help="keep serving after the examples, until Ctrl-C")
    parser.add_argument("--examples", type=Path, default=EXAMPLES_DIR, help="directory of Pod manifests (*.yaml)")
    parser.add_argument(
        "--run-dir", type=Path, help="where logs, certificates and the kubeconfig go (default: a new temp dir)"
    )
    parser.add_argument("--diff", action="store_true", help="show each pod's changes as a diff instead of 'after'")
    parser.add_argument("--keep", action="store_true", help="keep the run directory after a clean exit")
    parser.add_argument(
        "--live-chart",
        action="store_true",
        help="install the chart with helm (its pods on a real kubelet + containerd node, from `make images`; root)",
    )
    args = parser.parse_args(argv)

    examples = list(load_examples(args.examples))
    if not examples:
        print(f"no Pod manifests in {args.examples}/*.yaml", file=sys.stderr)
        return 2
    run_dir = args.run_dir or Path(tempfile.mkdtemp(prefix="frw-local-"))
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)

    cluster: LocalCluster | LiveCluster | None = None
    failed = False
    try:
        started = time.monotonic()
        if args.live_chart:
            cluster = start_live(run_dir, examples)
        else:
            print(
                "starting etcd, kube-apiserver, kube-scheduler, kube-controller-manager, kwok and the webhook "
                f"(logs in {run_dir}) ...",
                flush=True,
            )
            cluster = LocalCluster(run_dir)
            cluster.start()
            print(
                f"ready in {time.monotonic() - started:.1f} s: the chart's MutatingWebhookConfiguration is live",
                flush=True,
            )
        results = [apply_example(cluster, path, pod, args.diff) for path, pod in examples]
        denied = results.count(False)
        print(f"\n{len(results) - denied} of {len(results)} example pods admitted", flush=True)
        admitted = [(path, pod) for (path, pod), ok in zip(examples, results, strict=True) if ok]
        print_placements(cluster, admitted)
        failed = denied > 0
        if args.serve and isinstance(cluster, LiveCluster):
            serve_live_forever(cluster)
        elif args.serve:
            serve_forever(cluster)
    except Stop as stop:
        print(f"\n{stop}: stopping", file=sys.stderr)
    except HarnessError as exc:
        failed = True
        print(f"error: {exc}", file=sys.stderr)
        if cluster is not None:
            for name, path in cluster.log_files().items():
                print(f"----- {name}: end of {path}\n{tail(path, 30)}", file=sys.stderr)
    finally:
        # Ignore further signals while the children stop, so a second Ctrl-C cannot leave one behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if cluster is not None:
            cluster.stop()
        if failed or args.keep or args.run_dir:
            print(f"run directory kept: {run_dir}", file=sys.stderr)
        else:
            shutil.rmtree(run_dir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
