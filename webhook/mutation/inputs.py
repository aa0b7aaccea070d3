"""What the plan reads from a pod, read once: our annotations, the fields the steps look at, and their key.

The one place that reads a pod's fields before the plan: `plan_inputs` and `plan_mutation` agree on it, so a
malformed pod gets the same answer from both.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from webhook.engine.config import WebhookConfig
from webhook.engine.policies import PodFacts, is_flyte_task_pod, matched_label_keys, pod_facts
from webhook.mutation.annotations import APPLIED, FLYTE_PRIMARY_CONTAINER_ANNOTATION, our_keys
from webhook.mutation.pod_shape import shape_problem

# Everything `plan_mutation` reads from a pod besides our annotations; see `plan_inputs`.
_CONTAINER_INPUTS = ("name", "resources", "volumeMounts")
_SPEC_INPUTS = ("volumes", "affinity", "tolerations", "nodeSelector")

#: Our annotations and the serialized plan inputs; or what is wrong with them.
Found = tuple[dict[str, Any], bytes] | str


@dataclass(frozen=True, slots=True)
class PlanInputs:
    """A pod's plan inputs, read once: `key` for a server's memory of answers, the rest for `plan_mutation`."""

    key: bytes
    found: Found = field(repr=False)


def read_plan_inputs(
    pod: Mapping[str, Any], config: WebhookConfig | str, namespace: str | None = None
) -> PlanInputs | None:
    """`plan_inputs` and what it read, so that a server that misses its memory plans without reading again."""
    found = read_inputs(pod, config, namespace)
    if found is None:
        return None
    digest = hashlib.sha256()  # hardware-accelerated on most CPUs: ~2 ms for 3 MiB, where BLAKE2b takes ~6
    if isinstance(found, str):
        digest.update(b"problem\0" + found.encode("utf-8", "surrogatepass"))
    else:
        digest.update(b"inputs\0")
        digest.update(found[1])
    return PlanInputs(digest.digest(), found)


def plan_inputs(pod: Mapping[str, Any], config: WebhookConfig | str, namespace: str | None = None) -> bytes | None:
    """A 32-byte digest of the parts of `pod` that `plan_mutation` reads; None when the pod is not ours (no
    annotation of ours, and not a Flyte task pod under `flyte-task-pods`). `config` may be just the annotation
    prefix of a configuration without policies; with policies the labels they read and the namespace count too.

    Two pods with equal inputs get equal ops, warnings and outcome (a map task's pods differ only in names,
    env and args, which the plan never reads), so a server may reuse one plan's answer for the other. Present
    and absent keys stay distinct, and dict order is kept, so equal inputs mean equal ops to the letter. A pod
    whose inputs are malformed is keyed by its problem, which alone decides its answer. The key is a SHA-256
    digest so that it stays 32 bytes however large the pod.
    """
    inputs = read_plan_inputs(pod, config, namespace)
    return None if inputs is None else inputs.key


def read_inputs(pod: Mapping[str, Any], config: WebhookConfig | str, namespace: str | None = None) -> Found | None:
    """Our annotations and the serialized plan inputs; what is wrong with them; or None when none is ours.
    Metadata or annotations that are not objects hold no annotation of ours."""
    prefix = config if isinstance(config, str) else config.annotation_prefix
    full = None if isinstance(config, str) else config  # policies and flyte-task-pods need the whole config
    annotations = _annotations(pod)
    if annotations is None:
        return None
    ours = {k: v for k, v in annotations.items() if isinstance(k, str) and k.startswith(prefix)}
    wanted = full is not None and (full.policies or full.flyte_task_pods)
    facts = pod_facts(pod, namespace, full.namespace_template) if full is not None and wanted else None
    if not _is_ours(ours, prefix, full, facts):
        return None
    primary = annotations.get(FLYTE_PRIMARY_CONTAINER_ANNOTATION)
    problem = shape_problem(pod, primary)
    if problem is not None:
        return problem
    return _serialized(pod, ours, primary, () if facts is None or full is None else _policy_inputs(facts, full))


def _annotations(pod: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The pod's annotations; {} for a pod without (still ours when it is a Flyte task pod under
    flyte-task-pods); None when the metadata or the annotations are not objects."""
    metadata = pod.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, Mapping) else None
    if annotations is None and isinstance(metadata, Mapping):
        annotations = {}
    return annotations if isinstance(annotations, Mapping) else None


def _is_ours(ours: dict[str, Any], prefix: str, config: WebhookConfig | None, facts: PodFacts | None) -> bool:
    """Annotated by us, a Flyte task pod under `flyte-task-pods`, or carrying a summary we did not write (ours
    to remove)."""
    if our_keys(ours, prefix):
        return True
    flyte_pod = config is not None and config.flyte_task_pods and facts is not None and is_flyte_task_pod(facts)
    return flyte_pod or prefix + APPLIED in ours


def _serialized(pod: Mapping[str, Any], ours: dict[str, Any], primary: object, policy_inputs: tuple[Any, ...]) -> Found:
    spec = pod.get("spec") or {}
    containers = spec.get("containers")
    try:
        serialized = orjson.dumps(
            [
                ours,
                primary,
                None if containers is None else [{k: c[k] for k in _CONTAINER_INPUTS if k in c} for c in containers],
                {k: spec[k] for k in _SPEC_INPUTS if k in spec},
                *policy_inputs,
            ]
        )
    except orjson.JSONEncodeError as exc:  # integers beyond 64 bits, lone surrogates, nesting past 255 levels
        return f"the pod's fields the webhook reads are not plain JSON ({exc})"
    return ours, serialized


def _policy_inputs(facts: PodFacts, config: WebhookConfig) -> tuple[Any, ...]:
    """What policy matching reads: the labels it tests (not all: Flyte 2 labels each attempt) and the namespace."""
    labels = facts.labels
    return ({k: labels[k] for k in matched_label_keys(config) if k in labels}, facts.namespace)
