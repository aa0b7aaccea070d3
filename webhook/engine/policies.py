"""Which policy a pod falls under, and the configuration it then gets: Flyte's matchable-attribute precedence.

flyteadmin resolves task resource attributes by taking the most specific match for an execution, workflow >
project+domain > project, and falls back to its global `task_resources` for every resource the match does not
set (flyteadmin `pkg/manager/impl/util/resources.go`, `GetTaskResources`). Policies do the same over the labels
flytepropeller writes on every task pod (`project`, `domain`, `workflow-name`; flytepropeller
`pkg/compiler/transformers/k8s/workflow.go`) and the pod's namespace (`{project}-{domain}` in Flyte's default
namespace mapping, so a namespace counts as project+domain). Two levels Flyte lacks sit below project: domain
alone, then pod labels alone. Within one level the first policy of the list wins. The winner's keys are merged
key by key onto the global configuration, and its resource maps resource by resource.

A pod's own labels are not a boundary: anyone who may create a pod may write `project: ml` and `domain: production`
on it. So, as Flyte runs every task of a project and domain in the namespace its `namespace-template` names
(`{{ project }}-{{ domain }}` by default), a pod's `project` and `domain` labels count only when the pod stands in
that namespace; elsewhere it carries neither, for policies and for `flyte-task-pods` alike. An empty
`namespace-template` trusts the labels alone (a convenience for clusters that map namespaces otherwise).

Namespace labels are not matched: an AdmissionReview of a pod carries no namespace object, so they would need a
lookup of the namespace on every review; the webhook configuration's `namespaceSelector` narrows by them instead.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from webhook.engine.config import Policy, PolicyMatch, WebhookConfig

# The labels flytepropeller (Flyte 1) and the Flyte 2 executor put on every task pod.
PROJECT_LABEL = "project"
DOMAIN_LABEL = "domain"
WORKFLOW_LABEL = "workflow-name"
TASK_LABEL = "task-name"
FLYTE2_MANAGED_LABEL = "flyte.org/managed"  # Flyte 2: flyteplugins flytek8s `ManagedLabelKey`, value "true"
FLYTE_TASK_POD_LABELS = (PROJECT_LABEL, DOMAIN_LABEL, TASK_LABEL)

LEVEL_WORKFLOW, LEVEL_PROJECT_DOMAIN, LEVEL_PROJECT, LEVEL_DOMAIN, LEVEL_LABELS = 4, 3, 2, 1, 0
LEVEL_NAMES = {
    LEVEL_WORKFLOW: "workflow",
    LEVEL_PROJECT_DOMAIN: "project+domain",
    LEVEL_PROJECT: "project",
    LEVEL_DOMAIN: "domain",
    LEVEL_LABELS: "labels",
}


@dataclass(frozen=True)
class PodFacts:
    """What policies match on: the pod's namespace and labels, and the project and domain those labels may claim
    there (None where its namespace is not the one Flyte gives them). The labels are the pod's own mapping, not a
    copy (a hostile pod may carry many): matching only looks keys up, and a value that is not a string equals none."""

    namespace: str | None
    labels: Mapping[str, object]
    project: object = None
    domain: object = None


def pod_facts(pod: Mapping[str, Any], namespace: str | None = None, namespace_template: str = "") -> PodFacts:
    """The facts of a pod as the API server sends it; `namespace` is the review's, for a pod that names none."""
    metadata = pod.get("metadata")
    metadata = metadata if isinstance(metadata, Mapping) else {}
    labels = metadata.get("labels")
    labels = labels if isinstance(labels, Mapping) else {}
    own = metadata.get("namespace")
    namespace = own if isinstance(own, str) and own else namespace
    project, domain = labels.get(PROJECT_LABEL), labels.get(DOMAIN_LABEL)
    if namespace_template and flyte_namespace(namespace_template, project, domain) != namespace:
        project = domain = None
    return PodFacts(namespace, labels, project, domain)


def flyte_namespace(template: str, project: object, domain: object) -> str | None:
    """The namespace Flyte runs a project and domain in: `template` with `{{ project }}` and `{{ domain }}`
    replaced (flyteadmin's `namespace_mapping.template`); None unless both are strings."""
    if not isinstance(project, str) or not isinstance(domain, str):
        return None
    return template.replace("{{ project }}", project).replace("{{ domain }}", domain)


def is_flyte_task_pod(facts: PodFacts) -> bool:
    """A pod Flyte runs a task in: `project`, `domain` (in their namespace) and `task-name` labels (Flyte 1 and 2),
    or Flyte 2's `flyte.org/managed: "true"`. The chart's matchConditions test the same."""
    labels = facts.labels
    flyte1 = facts.project is not None and facts.domain is not None and TASK_LABEL in labels
    return flyte1 or labels.get(FLYTE2_MANAGED_LABEL) == "true"


def level(match: PolicyMatch) -> int:
    """How specific a match is, Flyte's order: workflow > project+domain (or namespace) > project > domain > labels."""
    if match.workflow:
        return LEVEL_WORKFLOW
    if (match.project and match.domain) or match.namespace:
        return LEVEL_PROJECT_DOMAIN
    if match.project:
        return LEVEL_PROJECT
    if match.domain:
        return LEVEL_DOMAIN
    return LEVEL_LABELS


def matches(match: PolicyMatch, facts: PodFacts) -> bool:
    labels = facts.labels
    return (
        (match.project is None or facts.project == match.project)
        and (match.domain is None or facts.domain == match.domain)
        and (match.workflow is None or labels.get(WORKFLOW_LABEL) == match.workflow_label)
        and (match.namespace is None or facts.namespace == match.namespace)
        and all(labels.get(key) == value for key, value in match.labels.items())
    )


def describe_match(match: PolicyMatch) -> str:
    """`project=ml, domain=development` for messages."""
    parts = [f"{key}={value}" for key, value in (("project", match.project), ("domain", match.domain)) if value]
    if match.workflow:
        parts.append(f"workflow={match.workflow}")
    if match.namespace:
        parts.append(f"namespace={match.namespace}")
    parts += [f"label {key}={value}" for key, value in match.labels.items()]
    return ", ".join(parts)


@dataclass(frozen=True)
class Resolved:
    """The configuration a pod is planned with, and the policy it came from (None: the global one)."""

    config: WebhookConfig
    policy: Policy | None = None


def resolve(config: WebhookConfig, facts: PodFacts) -> Resolved:
    """The most specific matching policy merged onto `config`; `config` itself when none matches."""
    for policy in _by_precedence(config):
        if matches(policy.match, facts):
            return Resolved(_merged(config, policy), policy)
    return Resolved(config)


def matched_label_keys(config: WebhookConfig) -> tuple[str, ...]:
    """Every label a policy or the Flyte task pod test reads: what a plan's answer depends on besides the pod."""
    return _index(config).label_keys


def _by_precedence(config: WebhookConfig) -> tuple[Policy, ...]:
    return _index(config).order


def _merged(config: WebhookConfig, policy: Policy) -> WebhookConfig:
    return _index(config).merged[policy.name]


@dataclass(frozen=True)
class _PolicyIndex:
    """What a configuration's `policies` give once, not per admission: their order, the labels they read, and the
    configuration each one's keys make."""

    order: tuple[Policy, ...]
    label_keys: tuple[str, ...]
    merged: Mapping[str, WebhookConfig]


class _ByIdentity:
    """A configuration as a cache key by identity: its maps make it unhashable by value. The cache holds the key,
    hence the configuration, so an id is never reused while cached."""

    __slots__ = ("config",)

    def __init__(self, config: WebhookConfig) -> None:
        self.config = config

    def __hash__(self) -> int:
        return id(self.config)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _ByIdentity) and other.config is self.config


def _index(config: WebhookConfig) -> _PolicyIndex:
    return _index_of(_ByIdentity(config))


# A few configurations live at once (the one served, one being reloaded, the CLI's): a small bound suffices.
@functools.lru_cache(maxsize=16)
def _index_of(key: _ByIdentity) -> _PolicyIndex:
    config = key.config
    labels = dict.fromkeys((*FLYTE_TASK_POD_LABELS, WORKFLOW_LABEL, FLYTE2_MANAGED_LABEL))
    for policy in config.policies:
        labels.update(dict.fromkeys(policy.match.labels))
    # sorted() is stable: within a level the list order stays, so the first entry wins.
    order = tuple(sorted(config.policies, key=lambda p: -level(p.match)))
    merged = MappingProxyType({policy.name: _merge(config, policy) for policy in config.policies})
    return _PolicyIndex(order, tuple(labels), merged)


def _merge(config: WebhookConfig, policy: Policy) -> WebhookConfig:
    update: dict[str, Any] = {}
    if policy.default_requests is not None:
        update["default_requests"] = {**config.default_requests, **policy.default_requests}
    if policy.platform_limits is not None:
        update["platform_limits"] = {**config.platform_limits, **policy.platform_limits}
    if policy.on_limit_exceeded is not None:
        update["on_limit_exceeded"] = policy.on_limit_exceeded
    return config.model_copy(update=update)
