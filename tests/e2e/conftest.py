"""Session fixtures for the end-to-end tests: a real kube-apiserver calling the real webhook process.

Fixtures (all session-scoped unless noted):

* `cluster` -> `hack.cluster.clusters.Cluster`: by default a `LocalCluster` (etcd, kube-apiserver, kube-scheduler,
  kube-controller-manager and KWOK with the node pools of `hack/cluster/nodepools.yaml`, on free loopback ports,
  `flyte-resources-webhook run` with a generated CA and an IP-SAN certificate, the chart's
  MutatingWebhookConfiguration pointing at it), ready once a server-side dry-run pod comes back mutated. Stops
  every process it started, by PID, at the end of the session (also when tests fail). Gives `kubeconfig`,
  `kubectl(...)`, `api_client()`, `reviews()` (the webhook's review counter by outcome) and `log_files()`.
* `kubeconfig` -> Path of the kubeconfig (admin token); `bin_dir` -> the binary cache (local mode).
* `api_client` -> `kubernetes.client.ApiClient`; `core_v1` -> `kubernetes.client.CoreV1Api`.
* `namespace` (function) -> a fresh namespace name, deleted (without waiting) after the test.
* `preset_webhooks` -> one webhook process per preset, each behind a copy of the chart's MWC selecting only pods
  labelled `e2e.flyte.org/webhook=preset-<name>` in the main webhook's own namespace (local mode only).
* `mixed_mig_webhook` -> a second webhook process with `mig-strategy: mixed`, registered under a second copy of
  the chart's MWC that only selects pods labelled `e2e.flyte.org/webhook=mig-mixed` (local mode only).
* `dead_webhooks` -> two more copies of the chart's MWC pointing at a port nobody listens on, one with
  `failurePolicy: Fail`, one with `Ignore`, each selecting only pods with its own label.

Every test in this folder is marked `e2e` here (by its folder), so `make unit` (`-m 'not e2e and not tools'`)
starts nothing.

Missing binaries fail the tests with a hint to run `make control-plane`; `FRW_ALLOW_SKIP_E2E=1` turns that into
a skip (the only opt-out). `pytest tests/e2e --existing-cluster` (or `FRW_E2E_EXISTING_CLUSTER=1`) runs the same
tests against `$KUBECONFIG`'s cluster where the chart is installed in `--webhook-namespace` (default
`flyte-resources-webhook`), e.g. a kind cluster; tests that need a local webhook process are skipped there.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hack.cluster.chart import WEBHOOK_NAMESPACE, render_webhook_config
from hack.cluster.clusters import Cluster, ExistingCluster, LocalCluster, dry_run_create, probe_pod, wait_for_mutation
from hack.cluster.presets import PRESET_ORDER as PRESETS
from hack.cluster.presets import SELECTOR_LABEL, PresetWebhooks
from hack.cluster.processes import Binaries, HarnessError, MissingBinaries, free_port, tail, wait_until
from hack.cluster.webhook import WebhookProcess

_CLUSTER = pytest.StashKey[Cluster]()

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in item.path.parents:
            item.add_marker(pytest.mark.e2e)


def _existing_cluster(config: pytest.Config) -> bool:
    if os.environ.get("FRW_E2E_EXISTING_CLUSTER") == "1":
        return True
    try:
        return bool(config.getoption("--existing-cluster"))
    except ValueError:  # the option is unknown when this conftest was not loaded at start-up
        return False


def _cannot_run(message: str) -> None:
    if os.environ.get("FRW_ALLOW_SKIP_E2E") == "1":
        pytest.skip(f"{message} (skipped because FRW_ALLOW_SKIP_E2E=1)")
    pytest.fail(message, pytrace=False)


def _log_tails(cluster: Cluster, lines: int = 60) -> str:
    return "\n".join(
        f"----- {name}: last {lines} lines of {path}\n{tail(path, lines)}" for name, path in cluster.log_files().items()
    )


def _binaries() -> Binaries:
    """The cached binaries, or a test failure naming `make control-plane` (a skip with FRW_ALLOW_SKIP_E2E=1)."""
    try:
        return Binaries.locate()
    except MissingBinaries as exc:
        missing = str(exc)
    _cannot_run(missing)  # outside the except block: no chained traceback in the report
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def live_chart_binaries(request: pytest.FixtureRequest) -> Binaries:
    """The cached binaries for a module that installs the chart for real on its own local cluster
    (`hack.cluster.live.LiveCluster`): skipped with --existing-cluster, failing without root (pod network)."""
    if _existing_cluster(request.config):
        pytest.skip("installs its own release on the local cluster (not available with --existing-cluster)")
    if os.geteuid() != 0:
        _cannot_run(f"the live chart needs root for network namespaces and veth pairs (euid {os.geteuid()})")
    return _binaries()


@pytest.fixture(scope="session")
def bin_dir() -> Path:
    return _binaries().directory


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    run_dir = tmp_path_factory.mktemp("frw-e2e")
    the_cluster: Cluster
    if _existing_cluster(request.config):
        namespace = request.config.getoption("--webhook-namespace", default=WEBHOOK_NAMESPACE)
        the_cluster = ExistingCluster(run_dir, namespace=namespace)
    else:
        the_cluster = LocalCluster(run_dir, _binaries())
    request.config.stash[_CLUSTER] = the_cluster
    failure = None
    try:
        the_cluster.start()
    except HarnessError as exc:
        the_cluster.stop()
        failure = f"cannot start the e2e cluster: {exc}\n(run dir: {run_dir})\n{_log_tails(the_cluster)}"
    if failure:
        pytest.fail(failure, pytrace=False)
    try:
        yield the_cluster
    finally:
        the_cluster.stop()


@pytest.fixture(scope="session")
def kubeconfig(cluster: Cluster) -> Path:
    return cluster.kubeconfig


@pytest.fixture(scope="session")
def api_client(cluster: Cluster) -> Any:
    return cluster.api_client()


@pytest.fixture(scope="session")
def core_v1(api_client: Any) -> Any:
    from kubernetes import client

    return client.CoreV1Api(api_client)


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    base = "".join(c if c.isalnum() else "-" for c in request.node.name.lower()).strip("-")
    name = f"e2e-{base[:40].strip('-')}-{secrets.token_hex(3)}"
    cluster.ensure_namespace(name)
    yield name
    # The namespace controller (kube-controller-manager) deletes what is left, and KWOK lets the pods go.
    cluster.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found")


@dataclass
class ExtraWebhook:
    """A second webhook configuration: pods in `namespace` labelled `labels` are sent to it (and only to it)."""

    name: str
    labels: dict[str, str]
    namespace: str
    process: WebhookProcess | None = None


@pytest.fixture(scope="session")
def mixed_mig_webhook(cluster: Cluster) -> Iterator[ExtraWebhook]:
    """`mig-strategy: mixed` needs another process with another config. Its MWC is the chart's, rendered for
    another release (so another name) with an objectSelector; its test pods live in the main webhook's own
    namespace, which the main MWC excludes, so exactly one webhook mutates them."""
    if not isinstance(cluster, LocalCluster):
        pytest.skip("needs a second local webhook process (not available with --existing-cluster)")
    labels = {SELECTOR_LABEL: "mig-mixed"}
    config = render_webhook_config(
        cluster.helm_bin, values={"config": {"preset": "eks", "mig-strategy": "mixed"}}, work_dir=cluster.run_dir
    )
    assert config.get("mig-strategy") == "mixed", config
    process, mwc = cluster.start_selected_webhook("mig-mixed", config, labels)
    yield ExtraWebhook(mwc["metadata"]["name"], labels, cluster.namespace, process)
    cluster.remove_webhook_configuration(mwc["metadata"]["name"])
    process.stop()


@pytest.fixture(scope="session")
def preset_webhooks(cluster: Cluster) -> Iterator[dict[str, ExtraWebhook]]:
    """One webhook process per preset (the chart's config with `preset: <name>`), each behind its own copy of the
    chart's MWC that selects only pods labelled `e2e.flyte.org/webhook=preset-<name>`. Their pods live in the
    main webhook's own namespace, which the main MWC excludes, so exactly one webhook mutates each. On an
    existing cluster, `hack/kind-test.sh` installs these as helm releases `frw-preset-<name>`."""
    if not isinstance(cluster, LocalCluster):
        existing = {
            p: ExtraWebhook(f"frw-preset-{p}", {SELECTOR_LABEL: f"preset-{p}"}, cluster.namespace) for p in PRESETS
        }
        for preset, hook in existing.items():
            probe = probe_pod(f"frw-preset-{preset}-probe")
            probe["metadata"]["labels"] = hook.labels
            wait_for_mutation(cluster, namespace=cluster.namespace, pod=probe)
        yield existing
        return
    presets = PresetWebhooks(cluster, cluster.namespace).start(PRESETS)
    yield {p: ExtraWebhook(h.mwc_name, h.labels, cluster.namespace, h.process) for p, h in presets.hooks.items()}
    presets.stop()


@pytest.fixture(scope="session")
def dead_webhooks(cluster: Cluster) -> Iterator[dict[str, ExtraWebhook]]:
    """Copies of the chart's MWC whose URL points at a loopback port nobody listens on (a stopped webhook), one
    per failure policy, each selecting only pods with its own label. The main webhook stays up meanwhile."""
    dead_url = f"https://127.0.0.1:{free_port()}"
    hooks: dict[str, ExtraWebhook] = {}
    # Ignore first: once the Fail copy is seen to deny, the apiserver's informer has seen the Ignore copy too.
    for policy in ("Ignore", "Fail"):
        labels = {SELECTOR_LABEL: f"dead-{policy.lower()}"}
        mwc = cluster.add_webhook_configuration(
            release=f"frw-e2e-dead-{policy.lower()}",
            base_url=dead_url,
            values={"webhook": {"failurePolicy": policy, "objectSelector": {"matchLabels": labels}}},
        )
        hooks[policy] = ExtraWebhook(mwc["metadata"]["name"], labels, cluster.namespace)
    probe = probe_pod("frw-dead-fail-probe")
    probe["metadata"]["labels"] = hooks["Fail"].labels

    def denied() -> bool:
        try:
            dry_run_create(cluster, "default", probe)
        except HarnessError as exc:
            return "failed calling webhook" in str(exc)
        return False

    wait_until(denied, timeout=30, what="the dead Fail webhook configuration to take effect")
    yield hooks
    for hook in hooks.values():
        cluster.remove_webhook_configuration(hook.name)


_LOG_OFFSETS = pytest.StashKey[dict[str, int]]()


def _log_sizes(config: pytest.Config) -> dict[str, int]:
    the_cluster = config.stash.get(_CLUSTER, None)
    if the_cluster is None:
        return {}
    return {str(path): path.stat().st_size for path in the_cluster.log_files().values() if path.exists()}


def pytest_runtest_setup(item: pytest.Item) -> None:
    item.stash[_LOG_OFFSETS] = _log_sizes(item.config)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """On a failed e2e test, attach what each process logged while it ran (the last 80 lines of it)."""
    report = yield
    if report.failed and item.get_closest_marker("e2e") is not None:
        the_cluster = item.config.stash.get(_CLUSTER, None)
        offsets = item.stash.get(_LOG_OFFSETS, {})
        for name, path in (the_cluster.log_files() if the_cluster else {}).items():
            try:
                with path.open("rb") as log:
                    log.seek(offsets.get(str(path), 0))
                    text = log.read().decode(errors="replace")
            except OSError as exc:
                text = f"(cannot read: {exc})"
            lines = text.splitlines()[-80:]
            report.sections.append((f"{name} log during this test ({path})", "\n".join(lines) or "(nothing)"))
    return report


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    the_cluster = config.stash.get(_CLUSTER, None)
    if the_cluster is not None and exitstatus != 0:
        terminalreporter.write_line(f"e2e: process logs and kubeconfig kept in {the_cluster.run_dir}")
