"""A pod cannot forge log lines: control characters in messages are escaped in every format."""

from __future__ import annotations

import io
import logging

from webhook.engine.config import WebhookConfig
from webhook.operator.logsafe import EscapeControlCharacters, escape_controls, install
from webhook.operator.review import PodReviewer


def test_escape_controls() -> None:
    assert escape_controls("plain text ü") == "plain text ü"
    assert escape_controls("a\nb\rc\x1b[31md\u2028") == "a\\nb\\rc\\x1b[31md\\u2028"


def test_a_denial_quoting_a_hostile_name_and_key_stays_one_line() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("flyte_resources_webhook")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        install(logger)
        assert any(isinstance(f, EscapeControlCharacters) for f in handler.filters)
        install(logger)
        assert sum(isinstance(f, EscapeControlCharacters) for f in handler.filters) == 1
        pod = {
            "metadata": {
                "name": "x\nINFO patched pod kube-system/forged",
                "annotations": {"resources.flyte.org/resources": "cpu=\nINFO forged too"},
            },
            "spec": {"containers": [{"name": "main"}]},
        }
        review = {"request": {"uid": "u", "operation": "CREATE", "namespace": "ns", "object": pod}}
        assert PodReviewer(WebhookConfig.from_mapping({}))(review)["response"]["allowed"] is False
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("INFO denied pod ns/x\\nINFO patched pod")
