"""A refusal inside a step is the annotation's when annotations asked for the step, the pod's when none did."""

from __future__ import annotations

import pytest

from webhook.engine.config import WebhookConfig
from webhook.engine.pod import PodSemanticsError
from webhook.mutation.annotations import InvalidAnnotation, ResourceRequest
from webhook.mutation.decision import Denied
from webhook.mutation.steps.state import Attributed, Context

P = "resources.flyte.org/"
CONFIG = WebhookConfig.from_mapping({})
CONTEXT = Context({}, ResourceRequest(P, {"shared-memory": "true"}), CONFIG, None, "nvidia.com/gpu")


def test_a_refusal_of_an_annotated_step_names_the_annotation_and_its_value():
    refused = pytest.raises(InvalidAnnotation, match=r"^annotation resources.flyte.org/shared-memory='true': A volume")
    with refused, Attributed(CONTEXT, ["shared-memory"], ""):
        raise PodSemanticsError("A volume is already named x in pod spec")


def test_a_refusal_of_a_step_no_annotation_asked_for_denies_the_pod_whatever_on_invalid_says():
    with pytest.raises(Denied) as caught, Attributed(CONTEXT, [], "config"):
        raise PodSemanticsError("mount path is not set")
    assert not isinstance(caught.value, InvalidAnnotation)
    assert caught.value.message == "config: mount path is not set"


def test_anything_else_is_a_bug_and_passes_through():
    with pytest.raises(KeyError), Attributed(CONTEXT, ["shared-memory"], ""):
        raise KeyError("boom")
