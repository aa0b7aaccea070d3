"""Live reload: a valid new config serves the next review, an invalid one is refused and counted, and a burst of
reviews across a reload sees every pod planned by exactly one of the two configurations."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from prometheus_client import CollectorRegistry

from webhook.engine.config import WebhookConfig
from webhook.mutation.plan import plan_mutation
from webhook.operator.metrics import Metrics
from webhook.operator.reload import ConfigMetrics, ConfigReloader, config_hash
from webhook.operator.review import PodReviewer

P = "resources.flyte.org/"
OLD = {"platform-limits": {"cpu": "4"}}
NEW = {"platform-limits": {"cpu": "2"}, "policies": [{"name": "dev", "match": {"domain": "dev"}, "max-gpus": 1}]}


class KubeletVolume:
    """A ConfigMap volume as kubelet lays it out: `config.yaml -> ..data/config.yaml`, `..data -> ..<version>`;
    an update writes a new version directory and renames a fresh `..data` symlink over the old one."""

    def __init__(self, root: Path, content: str) -> None:
        self.root = root
        self.version = 0
        self.update(content)
        (root / "config.yaml").symlink_to("..data/config.yaml")

    @property
    def path(self) -> Path:
        return self.root / "config.yaml"

    def update(self, content: str) -> None:
        self.version += 1
        version = self.root / f"..2026_12_01_00_00_{self.version:02d}"
        version.mkdir()
        (version / "config.yaml").write_text(content)
        temporary = self.root / "..data_tmp"
        temporary.symlink_to(version.name)
        os.replace(temporary, self.root / "..data")  # rename(2): atomic, as kubelet's AtomicWriter does


def review(cpu: str, name: str = "task", domain: str = "prod") -> dict[str, Any]:
    pod = {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "labels": {"domain": domain},
            "annotations": {P + "resources": f"cpu={cpu}"},
        },
        "spec": {"containers": [{"name": "main", "image": "x"}]},
    }
    return {"apiVersion": "admission.k8s.io/v1", "request": {"uid": name, "operation": "CREATE", "object": pod}}


def ops(response: dict[str, Any]) -> list[dict[str, Any]]:
    return orjson.loads(base64.b64decode(response["patch"]))  # type: ignore[no-any-return]


def cpu_limit(response: dict[str, Any]) -> str:
    (op,) = [o for o in ops(response) if o["path"] == "/spec/containers/0/resources"]
    return str(op["value"]["limits"]["cpu"])


def counts(metrics: Metrics) -> dict[str, float]:
    found = {}
    for result in ("applied", "unchanged", "invalid"):
        value = metrics.registry.get_sample_value("flyte_resources_webhook_config_reloads_total", {"result": result})
        found[result] = value or 0.0
    return found


@pytest.fixture
def setup(tmp_path: Path) -> tuple[KubeletVolume, PodReviewer, ConfigReloader, Metrics]:
    volume = KubeletVolume(tmp_path, yaml.safe_dump(OLD))
    config = WebhookConfig.from_mapping(OLD)
    metrics = Metrics()
    reviewer = PodReviewer(config, metrics)
    reloader = ConfigReloader(volume.path, reviewer, ConfigMetrics(metrics.registry, config), environ={})
    return volume, reviewer, reloader, metrics


def test_a_valid_change_serves_the_next_review(setup: Any) -> None:
    volume, reviewer, reloader, metrics = setup
    assert reloader.check() is None  # nothing changed yet
    assert cpu_limit(reviewer(review("3"))["response"]) == "3"
    assert cpu_limit(reviewer(review("8"))["response"]) == "4"  # planned and remembered under the old config
    volume.update(yaml.safe_dump(NEW))
    assert reloader.check() == "applied"
    # the same pod again: its remembered answer went with the old configuration
    assert cpu_limit(reviewer(review("8"))["response"]) == "2"
    assert reviewer.config.policies[0].name == "dev"
    assert counts(metrics) == {"applied": 1, "unchanged": 0, "invalid": 0}
    assert reloader.check() is None


def test_the_info_metric_names_the_active_config(setup: Any) -> None:
    volume, reviewer, reloader, metrics = setup
    old_hash = config_hash(reviewer.config)

    def info(hash_: str, policies: str) -> float | None:
        labels = {"hash": hash_, "policies": policies}
        return metrics.registry.get_sample_value("flyte_resources_webhook_config_info", labels)  # type: ignore[no-any-return]

    assert info(old_hash, "0") == 1
    volume.update(yaml.safe_dump(NEW))
    reloader.check()
    assert info(config_hash(WebhookConfig.from_mapping(NEW)), "1") == 1
    assert info(old_hash, "0") is None  # one active configuration at a time


def test_an_invalid_version_is_refused_logged_and_counted(setup: Any, caplog: pytest.LogCaptureFixture) -> None:
    volume, reviewer, reloader, metrics = setup
    before = reviewer.config
    caplog.set_level(logging.ERROR, logger="flyte_resources_webhook")
    volume.update(yaml.safe_dump({"platform-limits": {"cpu": "lots"}}))
    assert reloader.check() == "invalid"
    assert reviewer.config is before
    assert cpu_limit(reviewer(review("8"))["response"]) == "4"
    assert counts(metrics) == {"applied": 0, "unchanged": 0, "invalid": 1}
    (record,) = caplog.records
    assert "refused, still serving configuration " + config_hash(before) in record.getMessage()
    assert (
        "platform-limits: " in record.getMessage()
        and "'lots' is not a valid Kubernetes quantity" in record.getMessage()
    )
    # broken YAML, and a file that is gone, are refused the same way
    volume.update("platform-limits: {cpu: [")
    assert reloader.check() == "invalid"
    os.unlink(volume.root / "..data")
    assert reloader.check() == "invalid"
    assert counts(metrics)["invalid"] == 3
    last_ok = "flyte_resources_webhook_config_last_reload_successful"
    assert metrics.registry.get_sample_value(last_ok) == 0  # the refused file is still there
    # a valid version after the refusals is applied
    volume.update(yaml.safe_dump(NEW))
    assert reloader.check() == "applied"
    assert metrics.registry.get_sample_value(last_ok) == 1
    assert reviewer.config.platform_limits == {"cpu": "2"}


def test_a_change_that_keeps_the_configuration_is_counted_unchanged(setup: Any) -> None:
    volume, reviewer, reloader, metrics = setup
    before = reviewer.config
    assert reloader.check() is None  # the first look finds the configuration the process started with
    volume.update("# the same keys, another spelling\nplatform-limits:\n  cpu: 4000m\n")
    assert reloader.check() == "unchanged"
    assert reviewer.config is before
    assert counts(metrics) == {"applied": 0, "unchanged": 1, "invalid": 0}


def test_environment_overrides_still_apply_after_a_reload(tmp_path: Path) -> None:
    volume = KubeletVolume(tmp_path, yaml.safe_dump(OLD))
    environ = {"FRW_ON_INVALID": "ignore"}
    config = WebhookConfig.from_mapping({**OLD, "on-invalid": "ignore"})
    reviewer = PodReviewer(config)
    reloader = ConfigReloader(volume.path, reviewer, ConfigMetrics(CollectorRegistry(), config), environ=environ)
    volume.update(yaml.safe_dump(NEW))
    assert reloader.check() == "applied"
    assert reviewer.config.on_invalid == "ignore" and reviewer.config.platform_limits == {"cpu": "2"}


def test_a_burst_across_a_reload_sees_exactly_one_config_per_pod(setup: Any) -> None:
    """Four threads review distinct pods while the config is swapped: every answer is the plan of the old or of
    the new config to the letter, and every review that started after the swap returned has the new one."""
    volume, reviewer, reloader, _ = setup
    old, new = WebhookConfig.from_mapping(OLD), WebhookConfig.from_mapping(NEW)
    swapped, halfway, done = threading.Event(), threading.Event(), threading.Event()
    results: list[tuple[bool, dict[str, Any], dict[str, Any]]] = []
    lock = threading.Lock()

    def burst(worker: int) -> None:
        n = 0
        while not done.is_set() and n < 5000:
            posted = review(f"{1 + (n % 7)}", name=f"w{worker}-{n}", domain="dev" if n % 2 else "prod")
            after_swap = swapped.is_set()
            response = reviewer(posted)["response"]
            with lock:
                results.append((after_swap, posted, response))
                if len(results) >= 200:
                    halfway.set()
            n += 1

    threads = [threading.Thread(target=burst, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    assert halfway.wait(30)
    volume.update(yaml.safe_dump(NEW))
    assert reloader.check() == "applied"  # while the workers review
    swapped.set()
    at_swap = len(results)
    while len(results) < at_swap + 200:
        threading.Event().wait(0.001)
    done.set()
    for thread in threads:
        thread.join()

    seen = {"old": 0, "new": 0}
    for after_swap, posted, response in results:
        pod = posted["request"]["object"]
        by_old, by_new = plan_mutation(pod, old).ops, plan_mutation(pod, new).ops
        got = ops(response)
        assert got in (by_old, by_new), pod["metadata"]["name"]
        if by_old != by_new:
            which = "old" if got == by_old else "new"
            seen[which] += 1
            assert not (after_swap and which == "old"), f"{pod['metadata']['name']} got the old config after the swap"
    assert seen["old"] and seen["new"], seen


def test_run_polls_until_stopped(setup: Any) -> None:
    volume, reviewer, reloader, _ = setup
    reloader.interval = 0.01

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(reloader.run(stop))
        volume.update(yaml.safe_dump(NEW))
        for _ in range(200):
            await asyncio.sleep(0.01)
            if reviewer.config.policies:
                break
        stop.set()
        await asyncio.wait_for(task, 1)

    asyncio.run(scenario())
    assert reviewer.config.policies


def test_a_bug_while_reloading_does_not_stop_the_watcher(setup: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _, _, reloader, metrics = setup
    reloader.interval = 0.01
    calls = []

    def broken() -> None:
        calls.append(1)
        raise RuntimeError("bug")

    monkeypatch.setattr(reloader, "check", broken)

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(reloader.run(stop))
        while len(calls) < 3:
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(task, 1)

    asyncio.run(scenario())
    assert counts(metrics)["invalid"] >= 3


def test_a_change_of_what_the_webhook_configuration_selects_is_warned_about(
    setup: Any, caplog: pytest.LogCaptureFixture
) -> None:
    volume, reviewer, reloader, _ = setup
    caplog.set_level(logging.WARNING, logger="flyte_resources_webhook")
    volume.update(yaml.safe_dump({**OLD, "flyte-task-pods": True}))
    assert reloader.check() == "applied" and reviewer.config.flyte_task_pods
    (record,) = caplog.records
    assert "config flyte-task-pods changed" in record.getMessage() and "helm upgrade" in record.getMessage()


def test_a_change_before_the_watcher_started_is_not_missed(tmp_path: Path) -> None:
    volume = KubeletVolume(tmp_path, yaml.safe_dump(OLD))
    started_with = WebhookConfig.from_mapping(OLD)  # loaded at start; the file changes before the watcher runs
    volume.update(yaml.safe_dump(NEW))
    reviewer = PodReviewer(started_with)
    reloader = ConfigReloader(volume.path, reviewer, ConfigMetrics(CollectorRegistry(), started_with), environ={})
    assert reloader.check() == "applied"
    assert reviewer.config.platform_limits == {"cpu": "2"}


def test_serve_watches_the_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`serve` with `config_file` runs the watcher beside the server: the fast handler answers with the new config
    soon after the swap, and /metrics shows the reload and the active config. kopf's operator is a stand-in that
    drives the server's handler directly (no API server or TLS here)."""
    import urllib.request

    import kopf

    from hack.cluster.processes import free_port
    from webhook.operator.server import HANDLER_ID, ServerOptions, serve

    volume = KubeletVolume(tmp_path, yaml.safe_dump(OLD))
    seen: list[str] = []
    metrics_text: list[str] = []
    options = ServerOptions(
        addr="127.0.0.1",
        port=free_port(),
        probe_addr="127.0.0.1",
        probe_port=free_port(),
        config_file=volume.path,
        config_check_interval=0.02,
    )

    async def stand_in(*, settings: Any, stop_flag: asyncio.Event, **_: Any) -> None:
        handler = settings.admission.server.fast[HANDLER_ID]
        seen.append(cpu_limit(handler(review("8"))["response"]))
        volume.update(yaml.safe_dump(NEW))
        for _ in range(500):
            await asyncio.sleep(0.01)
            if cpu_limit(handler(review("8"))["response"]) == "2":
                break
        seen.append(cpu_limit(handler(review("8"))["response"]))
        url = f"http://127.0.0.1:{options.probe_port}/metrics"
        body = await asyncio.get_running_loop().run_in_executor(None, lambda: urllib.request.urlopen(url).read())
        metrics_text.append(body.decode())
        stop_flag.set()

    monkeypatch.setattr(kopf, "operator", stand_in)
    asyncio.run(serve(WebhookConfig.from_mapping(OLD), options))
    assert seen == ["4", "2"]
    assert 'flyte_resources_webhook_config_reloads_total{result="applied"} 1.0' in metrics_text[0]
    new_hash = config_hash(WebhookConfig.from_mapping(NEW))
    assert f'flyte_resources_webhook_config_info{{hash="{new_hash}",policies="1"}} 1.0' in metrics_text[0]
