"""One AdmissionReview in, one AdmissionReview out: the mutation plan, the failure policy, metrics and logs.

Never raises: a bug in our code is logged with the pod's namespace/name, counted, and answered by `on-error`
(deny, or allow unchanged with a warning), so it can neither crash the server nor reach users as a stack trace.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Mapping
from typing import Any

import orjson

from webhook.engine.config import WebhookConfig
from webhook.mutation.plan import Denied, Plan, plan_mutation
from webhook.operator.metrics import Metrics

logger = logging.getLogger("flyte_resources_webhook")


def pod_ref(request: Mapping[str, Any]) -> str:
    metadata = (request.get("object") or {}).get("metadata") or {}
    name = request.get("name") or metadata.get("name") or f"{metadata.get('generateName', '')}<generated>"
    return f"{request.get('namespace') or metadata.get('namespace') or '-'}/{name}"


class PodReviewer:
    def __init__(self, config: WebhookConfig, metrics: Metrics | None = None) -> None:
        self.config = config
        self.metrics = metrics or Metrics()

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
        try:
            plan = plan_mutation(pod, self.config)
        except Denied as exc:
            logger.info("denied pod %s: %s", pod_ref(request), exc.message)
            response["allowed"] = False
            response["status"] = {"code": 400, "reason": "BadRequest", "message": exc.message}
            return "denied"
        return self._respond(request, plan, response)

    def _respond(self, request: Mapping[str, Any], plan: Plan, response: dict[str, Any]) -> str:
        if plan.warnings:
            response["warnings"] = plan.warnings
        if not plan.ops:
            return "untouched"
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(orjson.dumps(plan.ops)).decode()
        # DEBUG, not INFO: a line per pod costs ~5% of throughput, and the pod itself records what was applied.
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("mutated pod %s: %d patch ops", pod_ref(request), len(plan.ops))
        return "mutated"
