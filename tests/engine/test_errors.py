"""Every refusal of an input shares one base; a refused pod is `Denied`, whatever refused it."""

from __future__ import annotations

import pytest

from webhook.engine.config import ConfigError
from webhook.engine.errors import Refusal
from webhook.engine.excerpt import bounded
from webhook.engine.pod import PlatformLimitExceeded, PodSemanticsError
from webhook.engine.quantity import InvalidQuantity
from webhook.engine.resources import InvalidResource
from webhook.mutation.annotations import InvalidAnnotation
from webhook.mutation.decision import Denied
from webhook.mutation.pod_shape import MalformedPod


@pytest.mark.parametrize(
    "error",
    [
        InvalidQuantity("x", "bad"),
        InvalidResource("Resources.cpu", "x", "bad"),
        PodSemanticsError("bad"),
        PlatformLimitExceeded("bad"),
        ConfigError("bad"),
        Denied("bad"),
        InvalidAnnotation("a", "v", "bad"),
        MalformedPod("bad"),
    ],
)
def test_every_refusal_is_a_refusal_and_a_value_error_with_its_message(error):
    assert isinstance(error, Refusal) and isinstance(error, ValueError)
    assert error.message == str(error) and "bad" in error.message


def test_invalid_input_is_a_denial_and_the_message_is_the_same():
    assert isinstance(InvalidAnnotation("a", "v", "bad"), Denied) and isinstance(MalformedPod("bad"), Denied)
    assert str(InvalidAnnotation("a", "v", "bad")) == "annotation a='v': bad"
    assert Denied("x" * 5000).message == bounded("x" * 5000) != "x" * 5000
