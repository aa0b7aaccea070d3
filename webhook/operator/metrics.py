"""Prometheus metrics of the admission server.

Every label value comes from the code or the configuration, never from a pod: `outcome` from `Outcome`, `policy`
from the names in the config's `policies` (or `NO_POLICY`), `version` from the package.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

from webhook import __version__
from webhook.mutation.decision import Outcome

# The `policy` label of a denial no policy governs (the global keys refused the pod).
NO_POLICY = "(global)"
# Up to the MutatingWebhookConfiguration's maximum timeoutSeconds (30), so that a p99 near the configured timeout
# can be told from one far below it; a fast review still stops at the first buckets.
DURATION_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.reviews = Counter(
            "flyte_resources_webhook_reviews",
            "Admission reviews answered, by outcome: " + ", ".join(o.value for o in Outcome) + ".",
            ["outcome"],
            registry=self.registry,
        )
        # Every label present at zero from the start, so rate() works on new pods; the children are kept, since
        # looking one up by its label costs a few microseconds of every review.
        self.review_counters = {outcome: self.reviews.labels(outcome.value) for outcome in Outcome}
        self.denials = Counter(
            "flyte_resources_webhook_denials",
            f"Denied reviews by the policy that governs the pod (a name from the config's policies, or {NO_POLICY}).",
            ["policy"],
            registry=self.registry,
        )
        self.denials.labels(NO_POLICY)
        self.duration = Histogram(
            "flyte_resources_webhook_review_duration_seconds",
            "Time to answer one admission review inside the webhook (JSON decode to response).",
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.build_info = Gauge(
            "flyte_resources_webhook_build_info", "Build information.", ["version"], registry=self.registry
        )
        self.build_info.labels(__version__).set(1)
        self.certificate_expiry = Gauge(
            "flyte_resources_webhook_certificate_expiry_timestamp_seconds",
            "When the served TLS certificate expires, in seconds since the epoch (NaN while it cannot be read).",
            registry=self.registry,
        )
        self.certificate_trusted = Gauge(
            "flyte_resources_webhook_certificate_trusted",
            "1 while the served TLS certificate is readable, valid now and signed by a CA of the webhook's caBundle; "
            "0 otherwise (/readyz fails then).",
            registry=self.registry,
        )
        self.ready = Gauge(
            "flyte_resources_webhook_ready",
            "1 while /readyz answers 200 (the HTTPS listener serves a usable certificate), else 0.",
            registry=self.registry,
        )
        # process_start_time_seconds, CPU, memory, file descriptors: a restart shows without kube-state-metrics.
        ProcessCollector(registry=self.registry)

    def count_policies(self, names: Iterable[str]) -> None:
        """Present the denial counter of each policy at zero (at start and when a reload brings new names)."""
        for name in names:
            self.denials.labels(name)
