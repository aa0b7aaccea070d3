"""The metrics' outcome labels are the reviewer's vocabulary, and the docs list exactly those."""

from __future__ import annotations

from pathlib import Path

import pytest

from webhook.mutation.decision import Outcome
from webhook.operator.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
LABELS = 'outcome="' + "|".join(o.value for o in Outcome) + '"'


def test_every_outcome_is_a_label_at_zero_from_the_start():
    registry = Metrics().registry
    for outcome in Outcome:
        assert registry.get_sample_value("flyte_resources_webhook_reviews_total", {"outcome": outcome.value}) == 0


@pytest.mark.parametrize("doc", ["README.md", "DEVELOPERS.md"])
def test_the_docs_list_the_outcome_labels_of_the_code(doc):
    assert LABELS in (ROOT / doc).read_text()
