"""One AdmissionReview in, one AdmissionReview out: the mutation layer's `Decision`, encoded; the failure policy,
metrics and logs.

Never raises, and the answer is always a valid `admission.k8s.io/v1` AdmissionReview, whatever was posted. From
the request it carries the `uid` (a short string only) and what the decision quotes: a denial or a warning names
the annotation or field at fault and its value, abbreviated, in at most ~1 KiB. A bug in our code is logged with
the pod's namespace/name, counted, and answered by `on-error` (deny, or allow unchanged with a warning), so it
can neither crash the server nor reach users as a stack trace.
"""

from __future__ import annotations

import base64
import logging
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from webhook.engine.config import WebhookConfig
from webhook.engine.excerpt import bounded, excerpt
from webhook.engine.policies import pod_facts, resolve
from webhook.mutation.decision import Decision, Outcome, errored
from webhook.mutation.fence import decide_resize
from webhook.mutation.inputs import read_plan_inputs
from webhook.mutation.plan import decide
from webhook.operator.metrics import NO_POLICY, Metrics

logger = logging.getLogger("flyte_resources_webhook")

API_VERSIONS = ("admission.k8s.io/v1", "admission.k8s.io/v1beta1")
# A Kubernetes uid is 36 characters; anything longer (or not a string) is not echoed.
UID_CHARS = 128
# Names and namespaces are at most 253 characters in Kubernetes; a longer one is shown abbreviated.
REF_CHARS = 253


def _text(value: object) -> str | None:
    return excerpt(value, REF_CHARS) if isinstance(value, str) and value else None


def pod_ref(request: object) -> str:
    """`namespace/name` of the pod under review for logs and messages; never raises, at most ~600 characters."""
    request = request if isinstance(request, Mapping) else {}
    pod = request.get("object")
    metadata = pod.get("metadata") if isinstance(pod, Mapping) else None
    metadata = metadata if isinstance(metadata, Mapping) else {}
    name = (
        _text(request.get("name"))
        or _text(metadata.get("name"))
        or f"{_text(metadata.get('generateName')) or ''}<generated>"
    )
    namespace = _text(request.get("namespace")) or _text(metadata.get("namespace")) or "-"
    return f"{namespace}/{name}"


def request_uid(request: Mapping[str, Any]) -> str:
    uid = request.get("uid")
    return uid if isinstance(uid, str) and len(uid) <= UID_CHARS else ""


def _deny(response: dict[str, Any], decision: Decision, request: Mapping[str, Any]) -> Outcome:
    logger.info("%s pod %s: %s", decision.outcome.value, pod_ref(request), decision.reason)
    response["allowed"] = False
    response["status"] = {"code": 400, "reason": "BadRequest", "message": decision.reason}
    return decision.outcome


def _governing_policy(pod: Mapping[str, Any], config: WebhookConfig, namespace: str | None) -> str:
    """The name of the policy a denied pod falls under (a name from `config`, never a pod's value), or NO_POLICY.
    Resolved again here, off the path of admitted pods: a denial does not say which policy it came from."""
    if not config.policies:
        return NO_POLICY
    try:
        policy = resolve(config, pod_facts(pod, namespace, config.namespace_template)).policy
    except Exception:  # a pod too malformed to match: the denial said why; count it, do not fail the answer
        return NO_POLICY
    return policy.name if policy is not None else NO_POLICY


def _errored(response: dict[str, Any], decision: Decision) -> Outcome:
    """Our own bug: whatever the review had put in the answer goes, the decision's refusal or warning stays."""
    for key in ("patch", "patchType", "warnings", "status"):
        response.pop(key, None)
    response["allowed"] = decision.allowed
    if decision.reason is not None:
        response["status"] = {"code": 500, "message": decision.reason}
    if decision.warnings:
        response["warnings"] = list(decision.warnings)
    return decision.outcome


@dataclass(frozen=True, slots=True)
class _Answer:
    """What a plan contributes to an AdmissionResponse, kept for pods with the same plan inputs; `size` is
    roughly the bytes it holds: the patch, the warnings and the objects around them."""

    outcome: Outcome
    warnings: tuple[str, ...]
    patch: str | None
    size: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", 256 + len(self.patch or "") + sum(64 + len(w) for w in self.warnings))


@dataclass
class _Generation:
    """One configuration and the answers planned under it: swapped as one object, so a review reads both from
    the same configuration, and answers of an old configuration go with it."""

    config: WebhookConfig
    # Ordered for eviction: popping a plain dict's first key again and again makes finding the next first key
    # walk every slot emptied before it until the dict is rebuilt.
    answers: OrderedDict[bytes, _Answer] = field(default_factory=OrderedDict)
    answers_bytes: int = 0


class PodReviewer:
    # The pods of a map task share their plan inputs (`plan_inputs`): plan the first, answer the rest alike. The
    # memory is bounded by bytes, not entries: an answer above ANSWER_BYTES_MAX is never kept (a pod with
    # thousands of containers), and the oldest answers go once the total passes ANSWERS_BYTES.
    ANSWER_BYTES_MAX = 64 * 1024
    ANSWERS_BYTES = 2 * 1024 * 1024

    def __init__(self, config: WebhookConfig, metrics: Metrics | None = None) -> None:
        self._generation = _Generation(config)
        self.metrics = metrics or Metrics()
        self.metrics.count_policies(p.name for p in config.policies)

    @property
    def config(self) -> WebhookConfig:
        return self._generation.config

    def use_config(self, config: WebhookConfig) -> None:
        """Serve the next review with `config` (a live reload). One assignment: a review in flight keeps the
        generation it started with, and no answer planned under the old configuration is served again."""
        self.metrics.count_policies(p.name for p in config.policies)
        self._generation = _Generation(config)

    @property
    def _answers(self) -> OrderedDict[bytes, _Answer]:
        return self._generation.answers

    @property
    def _answers_bytes(self) -> int:
        return self._generation.answers_bytes

    def __call__(self, review: Mapping[str, Any]) -> dict[str, Any]:
        started = time.perf_counter()
        request = review.get("request") if isinstance(review, Mapping) else None
        request = request if isinstance(request, Mapping) else {}
        response: dict[str, Any] = {"uid": request_uid(request), "allowed": True}
        outcome = Outcome.ALLOWED
        generation = self._generation  # the whole review sees one configuration
        try:
            outcome = self._review(request, response, generation)
        except Exception:
            ref = pod_ref(request)
            logger.exception("errored pod %s: internal error while reviewing it", ref)
            message = f"flyte-resources-webhook: internal error while reviewing pod {ref}; see the webhook's logs"
            outcome = _errored(response, errored(message, generation.config.on_error))
        finally:
            self.metrics.review_counters[outcome].inc()
            self.metrics.duration.observe(time.perf_counter() - started)
        api_version = review.get("apiVersion") if isinstance(review, Mapping) else None
        return {
            "apiVersion": api_version if api_version in API_VERSIONS else API_VERSIONS[0],
            "kind": "AdmissionReview",
            "response": response,
        }

    def _review(self, request: Mapping[str, Any], response: dict[str, Any], generation: _Generation) -> Outcome:
        pod = request.get("object")
        operation = request.get("operation", "CREATE")
        resize = operation == "UPDATE" and request.get("subResource") == "resize"
        # The webhook configuration sends CREATE of pods and their in-place resizes; anything else is answered
        # without a look.
        if not (operation == "CREATE" or resize) or not isinstance(pod, Mapping):
            return Outcome.ALLOWED
        config = generation.config
        namespace = request.get("namespace")
        namespace = namespace if isinstance(namespace, str) else None
        inputs = read_plan_inputs(pod, config, namespace)
        if inputs is None:
            return Outcome.ALLOWED
        if resize:  # the resources change after admission: the limits and the policy hold for the new ones
            decision = decide_resize(pod, config, namespace)
            return Outcome.ALLOWED if decision.allowed else _deny(response, decision, request)
        key = inputs.key
        answer = generation.answers.get(key)
        if answer is None:
            decision = decide(pod, config, namespace, inputs)
            if not decision.allowed:
                self.metrics.denials.labels(_governing_policy(pod, config, namespace)).inc()
                return _deny(response, decision, request)
            answer = self._remember(generation, key, decision)
        if answer.warnings:
            response["warnings"] = list(answer.warnings)
        if answer.patch is not None:
            response["patchType"] = "JSONPatch"
            response["patch"] = answer.patch
        # Each line starts with the outcome, as the metric's label says it. Allowed and patched pods at DEBUG, not
        # INFO: a line per pod costs ~20% of throughput, and the pod records what was applied.
        if answer.outcome is Outcome.IGNORED:
            warning = answer.warnings[0] if answer.warnings else ""
            logger.info("%s pod %s (admitted unchanged): %s", answer.outcome.value, pod_ref(request), warning)
        elif logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s pod %s", answer.outcome.value, pod_ref(request))
        return answer.outcome

    def _remember(self, generation: _Generation, key: bytes, decision: Decision) -> _Answer:
        patch = base64.b64encode(orjson.dumps(decision.ops)).decode() if decision.ops else None
        answer = _Answer(decision.outcome, tuple(bounded(w) for w in decision.warnings), patch)
        if answer.size > self.ANSWER_BYTES_MAX:
            return answer
        answers = generation.answers
        while answers and generation.answers_bytes + answer.size > self.ANSWERS_BYTES:
            # The oldest first: bursts are short, keep it simple.
            generation.answers_bytes -= answers.popitem(last=False)[1].size
        answers[key] = answer
        generation.answers_bytes += answer.size
        return answer
