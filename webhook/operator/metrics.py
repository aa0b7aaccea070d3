"""Prometheus metrics of the admission server."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from webhook import __version__
from webhook.operator.outcomes import Outcome


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
        self.duration = Histogram(
            "flyte_resources_webhook_review_duration_seconds",
            "Time to answer one admission review inside the webhook (JSON decode to response).",
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5),
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
