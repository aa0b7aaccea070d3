"""One AdmissionReview in, one AdmissionReview out: the mutation plan, the failure policy, metrics and logs.

Never raises: a bug in our code is logged with the pod's namespace/name, counted, and answered by `on-error`
(deny, or allow unchanged with a warning), so it can neither crash the server nor reach users as a stack trace.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from webhook.engine.config import WebhookConfig
from webhook.mutation.plan import Denied, Plan, plan_inputs, plan_mutation
from webhook.operator.metrics import Metrics

logger = logging.getLogger("flyte_resources_webhook")


def pod_ref(request: Mapping[str, Any]) -> str:
    metadata = (request.get("object") or {}).get("metadata") or {}
    name = request.get("name") or metadata.get("name") or f"{metadata.get('generateName', '')}<generated>"
    return f"{request.get('namespace') or metadata.get('namespace') or '-'}/{name}"


@dataclass(frozen=True)
class _Answer:
    """What a plan contributes to an AdmissionResponse, kept for pods with the same plan inputs."""

    outcome: str
    warnings: tuple[str, ...]
    patch: str | None


class PodReviewer:
    ANSWERS_KEPT = 1024

    def __init__(self, config: WebhookConfig, metrics: Metrics | None = None) -> None:
        self.config = config
        self.metrics = metrics or Metrics()
        # The pods of a map task share their plan inputs (`plan_inputs`): plan the first, answer the rest alike.
        self._answers: dict[bytes, _Answer] = {}

    def __call__(self, review: Mapping[str, Any]) -> dict[str, Any]:
        started = time.perf_counter()
        request = review.get("request") or {}
        response: dict[str, Any] = {"uid": request.get("uid", ""), "allowed": True}
        outcome = "untouched"
        try:
            outcome = self._review(request, response)
        except Exception:
            outcome = "error"
            ref = pod_ref(request)
            logger.exception("internal error while reviewing pod %s", ref)
            message = f"flyte-resources-webhook: internal error while reviewing pod {ref}; see the webhook's logs"
            response.pop("patch", None)
            response.pop("patchType", None)
            if self.config.on_error == "deny":
                response["allowed"] = False
                response["status"] = {"code": 500, "message": message}
            else:
                response["allowed"] = True
                response["warnings"] = [f"{message}; admitted unchanged (on-error: allow)"]
        finally:
            self.metrics.reviews.labels(outcome).inc()
            self.metrics.duration.observe(time.perf_counter() - started)
        return {
            "apiVersion": review.get("apiVersion", "admission.k8s.io/v1"),
            "kind": review.get("kind", "AdmissionReview"),
            "response": response,
        }

    def _review(self, request: Mapping[str, Any], response: dict[str, Any]) -> str:
        pod = request.get("object")
        # The webhook configuration sends CREATE of pods only; anything else is answered without a look,
        # since kopf would not enforce `operations=` either.
        if request.get("operation", "CREATE") != "CREATE" or not isinstance(pod, Mapping):
            return "untouched"
        key = plan_inputs(pod, self.config.annotation_prefix)
        if key is None:
            return "untouched"
        answer = self._answers.get(key)
        if answer is None:
            try:
                plan = plan_mutation(pod, self.config)
            except Denied as exc:
                logger.info("denied pod %s: %s", pod_ref(request), exc.message)
                response["allowed"] = False
                response["status"] = {"code": 400, "reason": "BadRequest", "message": exc.message}
                return "denied"
            answer = self._remember(key, plan)
        if answer.warnings:
            response["warnings"] = list(answer.warnings)
        if answer.patch is not None:
            response["patchType"] = "JSONPatch"
            response["patch"] = answer.patch
            # DEBUG, not INFO: a line per pod costs ~20% of throughput, and the pod records what was applied.
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("mutated pod %s", pod_ref(request))
        return answer.outcome

    def _remember(self, key: bytes, plan: Plan) -> _Answer:
        patch = base64.b64encode(orjson.dumps(plan.ops)).decode() if plan.ops else None
        answer = _Answer("mutated" if patch else "untouched", tuple(plan.warnings), patch)
        if len(self._answers) >= self.ANSWERS_KEPT:
            del self._answers[next(iter(self._answers))]  # the oldest: bursts are short, keep it simple
        self._answers[key] = answer
        return answer
