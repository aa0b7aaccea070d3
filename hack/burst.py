"""`make bench` (second part): a burst of annotated pods created concurrently through a real kube-apiserver.

Four admission setups, in one local cluster (hack.cluster: etcd, kube-apiserver, kube-scheduler,
kube-controller-manager, KWOK), each selecting only its own pods by label:

  none   no admission mutation at all;
  map    a MutatingAdmissionPolicy (admissionregistration.k8s.io/v1) doing the same mutation ours does for these
         pods in the apiserver with CEL JSONPatch: container resources, three tolerations, required node affinity
         (ApplyConfiguration cannot touch tolerations or affinity, which are atomic lists) and our `applied`
         record; before the runs, a dry-run pod of each must store the same resources, tolerations, affinity and
         record;
  bare   a webhook that answers `allowed` without a patch: our server stack (kopf's WebhookServer, uvloop,
         `build_server`) with a constant answer, in a process of its own, behind a copy of the chart's
         MutatingWebhookConfiguration;
  ours   `flyte-resources-webhook run` behind another copy of the chart's configuration.

Each run creates N pods (default 1000) from an asyncio client (aiohttp, keep-alive, C concurrent requests) and
records pods/s over the create phase, p50/p99 create latency, and the time until all N are Running (the real
scheduler binds them, KWOK runs them). Runs interleave the modes; the median of 3 runs counts. The pods ask for an
A100 1g.5gb slice (eks preset), so the node pools are the eks A100 MIG pool and the CPU pool, with enough nodes
for N pods. Exit 1 when ours is below 1.0x the policy's or 0.95x the patch-less webhook's pods/s.

Each run also reports the apiserver's side (`hack.apiserver_figures`): its admission metrics over the run (calls
per pod to the webhook, in-tree admission passes per pod, time per pod in the mutating step and in the webhook,
policy evaluations), the CPU per pod of every process of the cluster (apiserver, etcd, scheduler,
controller-manager, KWOK, both webhooks, this client), and the TCP connections the apiserver opened to the
mode's webhook (keep-alive: about as many as calls in flight). The last round is profiled: the apiserver's
`/debug/pprof/profile` over the create phase, summarised per mode by area (admission, webhook calls, the
policy, JSON patch, TLS handshakes, storage, GC; CPU ms per pod) with pprof's top functions for ours and the policy.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import secrets
import ssl
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # `python hack/burst.py` from anywhere
    sys.path.insert(0, str(REPO_ROOT))

from hack.apiserver_figures import (  # noqa: E402
    AdmissionFigures,
    ConnectionCounter,
    Profiler,
    ProfileSummary,
    cpu_by_process,
    profile_summary,
    scrape,
)
from hack.cluster.chart import ANNOTATION_PREFIX, APPLIED_ANNOTATION, localize_mwc, render_mwc  # noqa: E402
from hack.cluster.clusters import LocalCluster  # noqa: E402
from hack.cluster.nodepools import load  # noqa: E402
from hack.cluster.processes import HarnessError, Process, free_port, http_get, tail, wait_until  # noqa: E402

MODES = ("none", "map", "bare", "ours")
# With --untolerated: ours with `resource-tolerations: {}` (what the gke preset was before it added the tolerations
# ExtendedResourceToleration adds), so the cost of a second webhook call per pod shows in the same run.
UNTOLERATED = "untol"
MUTATING = ("map", "ours", UNTOLERATED)
MODE_LABEL = "bench.flyte.org/burst"
RUN_LABEL = "bench.flyte.org/run"
DEVICE, PARTITION = "nvidia-tesla-a100", "1g.5gb"
PRESETS = ("eks", "gke")  # presets with an A100 MIG pool in nodepools.yaml (`<preset>-a100-mig`)
RESOURCES = {"cpu": "10m", "memory": "32Mi", "nvidia.com/gpu": "1"}
TARGET_VS_MAP, TARGET_VS_BARE = 1.0, 0.95


def node_labels(preset: str) -> tuple[str, str]:
    """The node labels of the GPU device and of its partition size under `preset`."""
    from webhook.engine.config import WebhookConfig

    config = WebhookConfig.from_mapping({"preset": preset})
    return config.gpu_device_node_label, config.gpu_partition_size_node_label


def burst_pools(pods: int, preset: str = "eks") -> list[Any]:
    """The CPU pool and the preset's A100 MIG pool of nodepools.yaml, with as many nodes as `pods` needs."""
    data = load()
    mig, cpu = data.pool(f"{preset}-a100-mig"), data.pool("cpu")
    per_node = min(int(mig.allocatable["nvidia.com/gpu"]), int(mig.allocatable["pods"]))
    need = -(-pods // per_node) + 1
    cpu_need = -(-pods // int(cpu.allocatable["pods"])) + 1
    return [dataclasses.replace(cpu, count=max(cpu.count, cpu_need)), dataclasses.replace(mig, count=need)]


def pod_body(mode: str, run: str, index: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"burst-{mode}-{run}-{index}",
            "labels": {MODE_LABEL: mode, RUN_LABEL: run},
            "annotations": {
                ANNOTATION_PREFIX + "resources": "cpu=10m,mem=32Mi,gpu=1",
                ANNOTATION_PREFIX + "accelerator": "A100.partition_1g_5gb",
            },
        },
        "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]},
    }


# --------------------------------------------------------------------------------------------- the policy


def _toleration(key: str, value: str) -> str:
    return f'Object.spec.tolerations{{key: "{key}", operator: "Equal", value: "{value}", effect: "NoSchedule"}}'


def applied_summary(config: Mapping[str, Any]) -> str:
    """The `applied` annotation ours writes on a burst pod under `config` (every burst pod gets the same)."""
    from webhook.engine.config import WebhookConfig
    from webhook.mutation.plan import plan_mutation

    planned = plan_mutation(pod_body("ours", "summary", 0), WebhookConfig.from_mapping(dict(config))).pod
    return str(planned["metadata"]["annotations"][APPLIED_ANNOTATION])


def _cel_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def mutating_policy(summary: str, preset: str = "eks") -> list[dict[str, Any]]:
    """A MutatingAdmissionPolicy + binding giving the burst's `map` pods what our webhook gives them, our `applied`
    annotation (`summary`) included, so that both store the same pod. The policy skips a pod that has the record:
    a policy that changed the object is evaluated again on the reinvocation pass, where its appends would add
    every toleration a second time."""
    accel_label, partition_label = node_labels(preset)
    terms = "Object.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms"
    requirement = terms + '.matchExpressions{{key: "{}", operator: "In", values: ["{}"]}}'
    affinity = (
        "Object.spec.affinity{nodeAffinity: Object.spec.affinity.nodeAffinity{"
        "requiredDuringSchedulingIgnoredDuringExecution: "
        "Object.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution{"
        f"nodeSelectorTerms: [{terms}{{matchExpressions: ["
        f"{requirement.format(accel_label, DEVICE)}, {requirement.format(partition_label, PARTITION)}]}}]}}}}}}"
    )
    quantities = ", ".join(f'"{k}": "{v}"' for k, v in RESOURCES.items())
    resources = f"Object.spec.containers.resources{{limits: {{{quantities}}}, requests: {{{quantities}}}}}"
    # The toleration of the GPU resource too, as ours adds it (both presets): left to ExtendedResourceToleration,
    # its second pass would change the pod and evaluate the policy a second time.
    gpu = 'Object.spec.tolerations{key: "nvidia.com/gpu", operator: "Exists", effect: "NoSchedule"}'
    tolerations = [_toleration(accel_label, DEVICE), _toleration(partition_label, PARTITION), gpu]
    expression = (
        "(has(object.spec.tolerations) ? ["
        + ", ".join(f'JSONPatch{{op: "add", path: "/spec/tolerations/-", value: {t}}}' for t in tolerations)
        + f'] : [JSONPatch{{op: "add", path: "/spec/tolerations", value: [{", ".join(tolerations)}]}}]) + ['
        f'JSONPatch{{op: "add", path: "/spec/containers/0/resources", value: {resources}}}, '
        f'JSONPatch{{op: "add", path: "/spec/affinity", value: {affinity}}}]'
    )
    path = "/metadata/annotations/" + APPLIED_ANNOTATION.replace("~", "~0").replace("/", "~1")
    expression += f' + [JSONPatch{{op: "add", path: "{path}", value: {_cel_string(summary)}}}]'
    unrecorded = (
        f"!has(object.metadata.annotations) || !({_cel_string(APPLIED_ANNOTATION)} in object.metadata.annotations)"
    )

    name = "frw-burst"
    return [
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingAdmissionPolicy",
            "metadata": {"name": name},
            "spec": {
                "failurePolicy": "Fail",
                "reinvocationPolicy": "IfNeeded",  # as the chart's webhook
                "matchConstraints": {
                    "resourceRules": [
                        {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}
                    ]
                },
                "matchConditions": [{"name": "not-yet-mutated", "expression": unrecorded}],
                "mutations": [{"patchType": "JSONPatch", "jsonPatch": {"expression": expression}}],
            },
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingAdmissionPolicyBinding",
            "metadata": {"name": name},
            "spec": {
                "policyName": name,
                "matchResources": {"objectSelector": {"matchLabels": {MODE_LABEL: "map"}}},
            },
        },
    ]


# --------------------------------------------------------------------------------------------- the webhooks


ALLOW_PATH = "allow"


def allowed(review: Mapping[str, Any]) -> dict[str, Any]:
    response = {"uid": review["request"]["uid"], "allowed": True}
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}


async def _serve_allow(port: int, cert_dir: Path) -> None:
    """Our server stack (`build_server`, as `run` builds it) with a handler that allows without a patch."""
    from hack.webhook_process import local_options
    from webhook.engine.config import WebhookConfig
    from webhook.operator.review import PodReviewer
    from webhook.operator.server import build_server

    server = build_server(local_options(port, cert_dir), PodReviewer(WebhookConfig.from_mapping({})))
    server.fast[ALLOW_PATH] = allowed

    async def not_kopf(request: Any, **_: Any) -> Any:
        return allowed(request)

    async for _ in server(not_kopf):
        print("READY", flush=True)
        await asyncio.Event().wait()


def start_bare_server(cluster: LocalCluster, work: Path) -> tuple[Process, str, int]:
    """A webhook process of our server stack whose `/allow` path answers `allowed` with no patch."""
    from webhook.operator.certs import generate_bundle, write_bundle

    certs = work / "bare-certs"
    certs.mkdir(parents=True, exist_ok=True)
    bundle = generate_bundle(ip_addresses=["127.0.0.1"], dns_names=["localhost"])
    write_bundle(bundle, certs)
    port = free_port()
    argv = [sys.executable, "-m", "hack.burst", "--serve-allow", f"--port={port}", f"--cert-dir={certs}"]
    process = Process("bare-webhook", argv, work / "bare-webhook.log").start()
    context = ssl.create_default_context(cadata=bundle.ca_pem.decode())

    def listening() -> bool:
        return http_get(f"https://127.0.0.1:{port}/healthz", context=context)[0] > 0

    wait_until(listening, timeout=60, what="the bare webhook", alive=process.exited)
    # The chart's configuration, as for ours, pointed at the constant answer's path.
    release = "frw-burst-bare"
    values = {"webhook": {"objectSelector": {"matchLabels": {MODE_LABEL: "bare"}}}}
    mwc = render_mwc(cluster.helm_bin, release=release, namespace=release, values=values, work_dir=work)
    local = localize_mwc(mwc, f"https://127.0.0.1:{port}", bundle.ca_pem)
    local["webhooks"][0]["clientConfig"]["url"] = f"https://127.0.0.1:{port}/{ALLOW_PATH}"
    cluster.apply(local)
    return process, local["metadata"]["name"], port


# --------------------------------------------------------------------------------------------- a run


@dataclasses.dataclass
class RunResult:
    mode: str
    pods: int
    pods_per_s: float
    p50_ms: float
    p99_ms: float
    all_running_s: float
    errors: int
    admission: AdmissionFigures | None = None  # the apiserver's admission figures over this run
    profile: ProfileSummary | None = None  # the apiserver's CPU over the create phase, when profiled
    cpu_ms_per_pod: dict[str, float] = dataclasses.field(default_factory=dict)  # by process, until all Running
    webhook_connections: int = 0  # TCP connections the apiserver opened to the mode's webhook


async def create_all(server: str, token: str, ca: Path, namespace: str, bodies: list[bytes], concurrency: int) -> Any:
    import aiohttp

    url = f"{server}/api/v1/namespaces/{namespace}/pods"
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    context = ssl.create_default_context(cafile=str(ca))
    latencies: list[float] = []
    errors: list[str] = []
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    connector = aiohttp.TCPConnector(limit=concurrency, ssl=context)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def worker() -> None:
            while not queue.empty():
                body = queue.get_nowait()
                started = time.perf_counter()
                async with session.post(url, data=body) as reply:
                    text = await reply.text()
                latencies.append(time.perf_counter() - started)
                if reply.status != 201:
                    errors.append(f"{reply.status}: {text[:300]}")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started, latencies, errors


def count_running(core: Any, namespace: str, run: str) -> int:
    pods = core.list_namespaced_pod(
        namespace, label_selector=f"{RUN_LABEL}={run}", field_selector="status.phase=Running"
    )
    return len(pods.items)


def one_run(
    cluster: LocalCluster,
    mode: str,
    pods: int,
    concurrency: int,
    timeout: float,
    profile_seconds: int = 0,
    profile_file: Path | None = None,
    pids: dict[str, int] | None = None,
    webhook_port: int = 0,
) -> RunResult:
    """One burst of `pods`; with `profile_seconds`, the apiserver's CPU profile over the create phase's start."""
    from kubernetes import client

    plane = cluster.control_plane
    assert plane is not None
    core = client.CoreV1Api(cluster.api_client())
    run = secrets.token_hex(3)
    bodies = [json.dumps(pod_body(mode, run, i)).encode() for i in range(pods)]
    before = scrape(plane.server, plane.token, plane.ca_file)
    cpu_before = cpu_by_process(pids or {})
    profiler = None
    if profile_seconds and profile_file is not None:
        profiler = Profiler(plane.server, plane.token, plane.ca_file, profile_seconds, profile_file).start()
    started = time.monotonic()
    with ConnectionCounter(webhook_port) as connections:
        seconds, latencies, errors = asyncio.run(
            create_all(plane.server, plane.token, plane.ca_file, cluster.namespace, bodies, concurrency)
        )
    if errors:
        raise HarnessError(f"{mode}: {len(errors)} of {pods} creates failed, e.g. {errors[0]}")
    while (running := count_running(core, cluster.namespace, run)) < pods:
        if time.monotonic() - started > timeout:
            raise HarnessError(f"{mode}: only {running} of {pods} pods Running after {timeout:.0f} s")
        time.sleep(0.2)
    all_running = time.monotonic() - started
    cpu = {name: 1000 * (t - cpu_before[name]) / pods for name, t in cpu_by_process(pids or {}).items()}
    # After every pod is bound, so each pod's create and its binding are both in the figures.
    admission = AdmissionFigures.between(before, scrape(plane.server, plane.token, plane.ca_file), pods)
    profile = None
    if profiler is not None and (path := profiler.wait()) is not None:
        profile = profile_summary(path, pods=min(pods, pods / seconds * profile_seconds))
    core.delete_collection_namespaced_pod(cluster.namespace, label_selector=f"{RUN_LABEL}={run}")
    wait_until(
        lambda: not core.list_namespaced_pod(cluster.namespace, label_selector=f"{RUN_LABEL}={run}", limit=1).items,
        timeout=timeout,
        what=f"the {mode} pods to be deleted",
        interval=0.5,
    )
    ordered = sorted(latencies)
    return RunResult(
        mode=mode,
        pods=pods,
        pods_per_s=pods / seconds,
        p50_ms=1000 * ordered[len(ordered) // 2],
        p99_ms=1000 * ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        all_running_s=all_running,
        errors=len(errors),
        admission=admission,
        profile=profile,
        cpu_ms_per_pod=cpu,
        webhook_connections=len(connections.peers) if webhook_port else 0,
    )


def check_mutation(cluster: LocalCluster, mode: str) -> None:
    """One dry-run pod per mode: the policy and both webhooks must be in effect (and `none` must not mutate)."""
    from hack.cluster.clusters import dry_run_create

    def placed() -> bool:
        out = dry_run_create(cluster, cluster.namespace, pod_body(mode, "probe", 0))
        spec = out["spec"]
        has_affinity = bool(spec.get("affinity"))
        return has_affinity if mode in MUTATING else (not has_affinity and bool(out))

    wait_until(placed, timeout=30, what=f"the {mode} setup to take effect", interval=0.3)


def check_same_mutation(cluster: LocalCluster, modes: tuple[str, ...] = ("map", "ours")) -> None:
    """The policy and ours must store the same pod: resources, tolerations, affinity and the `applied` record."""
    from hack.cluster.clusters import dry_run_create

    def mutated(mode: str) -> dict[str, Any]:
        out = dry_run_create(cluster, cluster.namespace, pod_body(mode, "probe", 0))
        spec = out["spec"]
        return {
            "resources": spec["containers"][0].get("resources"),
            "tolerations": spec.get("tolerations"),
            "affinity": spec.get("affinity"),
            "applied": out["metadata"].get("annotations", {}).get(APPLIED_ANNOTATION),
        }

    stored = {mode: mutated(mode) for mode in modes}
    first, *others = modes
    for mode in others:
        if stored[mode] != stored[first]:
            raise HarnessError(f"{first} and {mode} store different pods: {stored[first]} != {stored[mode]}")


def median_of(results: list[RunResult]) -> RunResult:
    """The run with the median pods/s (so all its figures are from one run)."""
    ordered = sorted(results, key=lambda r: r.pods_per_s)
    return ordered[len(ordered) // 2]


def report(medians: dict[str, RunResult], runs: int) -> str:
    lines = [
        f"{'mode':<6} {'pods/s':>8} {'vs none':>8} {'p50 ms':>8} {'p99 ms':>8} {'all Running s':>14}",
    ]
    base = medians["none"].pods_per_s
    for mode, r in medians.items():
        lines.append(
            f"{mode:<6} {r.pods_per_s:>8.0f} {r.pods_per_s / base:>7.2f}x {r.p50_ms:>8.1f} {r.p99_ms:>8.1f}"
            f" {r.all_running_s:>14.1f}"
        )
    lines.append(f"(median of {runs} runs by pods/s; {medians['none'].pods} pods per run)")
    return "\n".join(lines)


def apiserver_report(medians: dict[str, RunResult], results: dict[str, list[RunResult]]) -> str:
    """The apiserver's side of each mode: its admission figures (median run) and its CPU profile (profiled run)."""
    lines = ["apiserver admission figures per pod (median run; passes: the in-tree chain, create + binding = 2):"]
    for mode in medians:
        figures = medians[mode].admission
        if figures is not None:
            lines.append(f"  {mode:<5} {figures.line({})}")
    lines.append("CPU ms per pod by process (median run, until all Running; client = this process):")
    names = list(medians["none"].cpu_ms_per_pod)
    lines.append(f"  {'mode':<5} {'all':>7} " + " ".join(f"{n[:14]:>14}" for n in names))
    for mode in medians:
        cpu = medians[mode].cpu_ms_per_pod
        lines.append(f"  {mode:<5} {sum(cpu.values()):>7.2f} " + " ".join(f"{cpu.get(n, 0):>14.2f}" for n in names))
    lines.append(
        "webhook connections the apiserver opened (median run): "
        + ", ".join(f"{m} {r.webhook_connections}" for m, r in medians.items() if m not in ("none", "map"))
    )
    profiled = {mode: next((r.profile for r in results[mode] if r.profile), None) for mode in medians}
    if any(profiled.values()):
        areas = list(next(p for p in profiled.values() if p).areas)
        lines.append("apiserver CPU ms per pod over the create phase (pprof; an area counts every sample under it):")
        lines.append(f"  {'mode':<5} {'total':>7} " + " ".join(f"{a:>14}" for a in areas))
        for mode, summary in profiled.items():
            if summary is not None:
                cells = " ".join(f"{summary.per_pod(summary.areas[a]):>14.2f}" for a in areas)
                lines.append(f"  {mode:<5} {summary.per_pod(summary.total_ms):>7.2f} {cells}")
        for mode in ("ours", "map"):
            summary = profiled[mode]
            if summary is not None:
                lines.append(f"  {mode}: the admission path's heaviest functions, cumulative CPU ms per pod:")
                lines.extend(f"    {ms:6.2f}  {name}" for ms, name in summary.top_per_pod())
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hack.burst", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pods", type=int, default=int(os.environ.get("BURST_PODS", 1000)))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--timeout", type=float, default=300.0, help="per run, until all pods are Running")
    parser.add_argument(
        "--preset",
        choices=PRESETS,
        default="eks",
        help="ours runs under this preset (gke: no resource-tolerations, the apiserver's ExtendedResourceToleration"
        " adds the GPU toleration), the pods go to its A100 MIG pool, the policy uses its node labels",
    )
    parser.add_argument(
        "--untolerated",
        action="store_true",
        help=f"a fifth mode, {UNTOLERATED!r}: ours with `resource-tolerations: {{}}` (with --preset gke: the preset"
        " before it tolerated what ExtendedResourceToleration adds)",
    )
    parser.add_argument(
        "--no-profile", dest="profile", action="store_false", help="no CPU profile of the apiserver in the last round"
    )
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "bench-results" / "burst.json")
    parser.add_argument("--serve-allow", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--cert-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_allow:
        from webhook.operator.run import run_loop

        run_loop(_serve_allow(args.port, args.cert_dir))  # the event loop `run` uses
        return 0

    work = Path(tempfile.mkdtemp(prefix="frw-burst-"))
    from hack.cluster.chart import WEBHOOK_NAMESPACE, render_webhook_config
    from hack.cluster.processes import Binaries

    chart_config = render_webhook_config(str(Binaries.locate().helm), namespace=WEBHOOK_NAMESPACE)
    config = chart_config | {"preset": args.preset}
    modes = (*MODES, UNTOLERATED) if args.untolerated else MODES
    cluster = LocalCluster(work / "cluster", pools=burst_pools(args.pods, args.preset), webhook_config=config)
    bare: Process | None = None
    try:
        started = time.monotonic()
        cluster.start()
        print(f"cluster ready in {time.monotonic() - started:.1f} s (logs in {work})", flush=True)
        # The patch-less webhook first: it changes nothing one could wait for, so it is registered before the
        # others, which are waited for (the apiserver's informer sees configurations in order).
        bare, _, bare_port = start_bare_server(cluster, work)
        for doc in mutating_policy(applied_summary(config), args.preset):
            cluster.apply(doc)
        assert cluster.webhook is not None and cluster.control_plane is not None
        cluster.add_webhook_configuration(
            release="frw-burst-ours",
            base_url=cluster.webhook.url,
            values={"webhook": {"objectSelector": {"matchLabels": {MODE_LABEL: "ours"}}}},
        )
        ports = {"bare": bare_port, "ours": cluster.webhook.port}
        procs = [*cluster.control_plane.processes, bare, cluster.webhook.process]
        if args.untolerated:
            hook = cluster.start_extra_webhook("webhook-untol", config | {"resource-tolerations": {}})
            cluster.add_webhook_configuration(
                release="frw-burst-untol",
                base_url=hook.url,
                values={"webhook": {"objectSelector": {"matchLabels": {MODE_LABEL: UNTOLERATED}}}},
            )
            ports[UNTOLERATED] = hook.port
            procs.append(hook.process)
        for mode in modes:
            check_mutation(cluster, mode)
        check_same_mutation(cluster)
        results: dict[str, list[RunResult]] = {mode: [] for mode in modes}
        pids = {p.name: p.pid for p in procs if p is not None and p.pid is not None}
        pids["client"] = os.getpid()
        for i in range(args.runs):
            for mode in modes:
                # The last round is profiled, over about the create phase the earlier rounds took.
                seconds = 0
                if args.profile and i == args.runs - 1:
                    rate = results[mode][-1].pods_per_s if results[mode] else 100.0
                    seconds = max(2, round(args.pods / rate))
                profile_file = work / f"apiserver-{mode}.pprof"
                port = ports.get(mode, 0)
                result = one_run(
                    cluster, mode, args.pods, args.concurrency, args.timeout, seconds, profile_file, pids, port
                )
                results[mode].append(result)
                print(
                    f"run {i + 1} {mode:<5} {result.pods_per_s:6.0f} pods/s  p50 {result.p50_ms:6.1f} ms"
                    f"  p99 {result.p99_ms:6.1f} ms  all Running after {result.all_running_s:5.1f} s",
                    flush=True,
                )
                if result.admission is not None:
                    print(f"      apiserver: {result.admission.line({})}", flush=True)
                print(
                    f"      CPU ms/pod: {sum(result.cpu_ms_per_pod.values()):.2f} ("
                    + ", ".join(f"{n} {v:.2f}" for n, v in result.cpu_ms_per_pod.items())
                    + f"); webhook connections {result.webhook_connections}",
                    flush=True,
                )
    except HarnessError as exc:
        print(f"burst: {exc}", file=sys.stderr)
        for name, path in cluster.log_files().items():
            print(f"----- {name}: end of {path}\n{tail(path, 20)}", file=sys.stderr)
        return 1
    finally:
        if bare is not None:
            bare.stop()
        cluster.stop()

    medians = {mode: median_of(rs) for mode, rs in results.items()}
    print("\n" + report(medians, args.runs))
    print(apiserver_report(medians, results))
    ours, policy, patchless = (medians[m].pods_per_s for m in ("ours", "map", "bare"))
    verdict: dict[str, Any] = {
        "ours_vs_map": ours / policy,
        "ours_vs_bare": ours / patchless,
        "target_vs_map": TARGET_VS_MAP,
        "target_vs_bare": TARGET_VS_BARE,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps(
            {"runs": {m: [dataclasses.asdict(r) for r in rs] for m, rs in results.items()}, "verdict": verdict},
            indent=2,
        )
    )
    running = medians["ours"].all_running_s, medians["map"].all_running_s
    verdict["all_running_s_ours_vs_map"] = list(running)
    ok = (
        verdict["ours_vs_map"] >= TARGET_VS_MAP
        and verdict["ours_vs_bare"] >= TARGET_VS_BARE
        and running[0] <= running[1]
    )
    print(
        f"ours = {verdict['ours_vs_map']:.2f}x the policy (target >= {TARGET_VS_MAP}), "
        f"{verdict['ours_vs_bare']:.2f}x the patch-less webhook (target >= {TARGET_VS_BARE}), "
        f"all Running after {running[0]:.1f} s (the policy: {running[1]:.1f} s): " + ("met" if ok else "NOT met")
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
