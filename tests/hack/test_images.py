"""The image tarballs are named by what they are built from, and tagged as the chart's values name them."""

from __future__ import annotations

import yaml

from hack import images
from hack.cluster.chart import CHART_DIR


def test_images_are_tagged_as_the_charts_default_values() -> None:
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    appversion = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())["appVersion"]
    webhook, kubectl = images.chart_images()
    assert webhook == f"{values['image']['repository']}:{appversion}"
    assert kubectl == f"{values['tests']['image']['repository']}:{values['tests']['image']['tag']}"


def test_the_webhook_inputs_hash_follows_the_sources() -> None:
    before = images._tree_digest(images.WEBHOOK_INPUTS)
    assert before == images._tree_digest(images.WEBHOOK_INPUTS)
    assert before != images._tree_digest(("Dockerfile",))


def test_each_image_is_saved_under_a_tag_of_its_own_inputs() -> None:
    image = images.Image("webhook", "ghcr.io/flyteorg/flyte-resources-webhook:0.1.0", "0123456789abcdef")
    assert image.saved_as == "ghcr.io/flyteorg/flyte-resources-webhook:0.1.0-frw-0123456789abcdef"
    assert image.tarball.name == "webhook-0123456789abcdef.tar"
