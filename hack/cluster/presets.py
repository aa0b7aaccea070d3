"""One webhook per preset on one cluster, as if each preset were a cluster of its own.

Each preset gets a webhook process (the chart's config with `preset: <name>`) behind its own copy of the chart's
MutatingWebhookConfiguration, which selects only pods labelled `e2e.flyte.org/webhook=preset-<name>`. Those pods
live in the main webhook's own namespace, which the main configuration excludes, so exactly one webhook mutates
each; `for_preset` also confines them to that preset's nodes. `make run` / `make demo` show each example under
the preset it is written for this way; it works beside a local webhook process and beside the installed chart.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from hack.cluster import placement
from hack.cluster.chart import render_webhook_config
from hack.cluster.clusters import Cluster, probe_pod, wait_for_mutation
from hack.cluster.nodepools import load
from hack.cluster.processes import stop_together
from hack.cluster.webhook import WebhookCerts, WebhookProcess

SELECTOR_LABEL = "e2e.flyte.org/webhook"
# The chart's default first: an example that has a place under it is shown there.
PRESET_ORDER = ("eks", "gke", "karpenter", "gfd", "amd")


def preset_of(example: str) -> str:
    """The preset an example (a file name in examples/) is written for: the chart's default, `eks`, when it has
    a place there (`placements` in nodepools.yaml), else the first preset whose nodes have its hardware."""
    pools = load()
    for preset in PRESET_ORDER:
        if pools.expected(example, preset):
            return preset
    raise ValueError(f"{example}: no preset has a place for it in hack/cluster/nodepools.yaml")


@dataclass
class PresetWebhook:
    preset: str
    process: WebhookProcess
    mwc_name: str

    @property
    def labels(self) -> dict[str, str]:
        return {SELECTOR_LABEL: f"preset-{self.preset}"}


class PresetWebhooks:
    """`start(presets)` launches the processes in parallel, registers their configurations and waits until
    each mutates; `stop()` removes both (the cluster's `stop()` removes the configurations too)."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.cluster = cluster
        self.namespace = namespace  # the main webhook's own namespace, excluded by its configuration
        self.hooks: dict[str, PresetWebhook] = {}

    def start(self, presets: Iterable[str]) -> PresetWebhooks:
        cluster = self.cluster
        assert cluster.kubeconfig is not None
        run_dir = cluster.run_dir
        certs = WebhookCerts.generate(run_dir / "preset-webhook-certs")
        processes = {}
        for preset in presets:
            config = render_webhook_config(cluster.helm_bin, values={"config": {"preset": preset}}, work_dir=run_dir)
            process = WebhookProcess(f"webhook-{preset}", run_dir, cluster.kubeconfig, certs, config)
            processes[preset] = process.start(wait=False)
        try:
            for preset, process in processes.items():
                process.wait_ready()
                labels = {SELECTOR_LABEL: f"preset-{preset}"}
                mwc = cluster.add_webhook_configuration(
                    release=f"frw-preset-{preset}",
                    base_url=process.url,
                    values={"webhook": {"objectSelector": {"matchLabels": labels}}},
                    ca_pem=certs.ca_pem,
                )
                self.hooks[preset] = PresetWebhook(preset, process, mwc["metadata"]["name"])
            for preset, hook in self.hooks.items():
                probe = probe_pod(f"frw-preset-{preset}-probe")
                probe["metadata"]["labels"] = hook.labels
                alive = hook.process.process.exited if hook.process.process else None
                wait_for_mutation(cluster, namespace=self.namespace, pod=probe, alive=alive)
        except BaseException:
            stop_together([p.process for p in processes.values() if p.process is not None])
            raise
        return self

    def pod(self, pod: Mapping[str, Any], preset: str) -> dict[str, Any]:
        """`pod` sent to `preset`'s webhook and confined to its nodes: in the main webhook's namespace, with the
        selector label and a nodeSelector on the preset's cluster label."""
        body = placement.for_preset(copy.deepcopy(dict(pod)), preset)
        meta = body["metadata"]
        meta["namespace"] = self.namespace
        meta["labels"] = {**(meta.get("labels") or {}), **self.hooks[preset].labels}
        return body

    def log_files(self) -> dict[str, Any]:
        return {
            hook.process.name: hook.process.process.log_path
            for hook in self.hooks.values()
            if hook.process.process is not None
        }

    def exited(self) -> str | None:
        for hook in self.hooks.values():
            if hook.process.process is not None and (reason := hook.process.process.exited()):
                return reason
        return None

    def stop(self) -> None:
        for hook in self.hooks.values():
            self.cluster.remove_webhook_configuration(hook.mwc_name)
        stop_together([h.process.process for h in self.hooks.values() if h.process.process is not None])
