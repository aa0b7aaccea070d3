"""The config file as hostile input: capped, without anchors or aliases, never empty, errors bounded; checked at
edit time (`/validate-config`, `validate-config`) exactly as a replica loads it; a restarted replica keeps its last
good configuration; a plain file is read only once it has stopped changing."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from webhook.cli import main
from webhook.engine.config import ConfigError, WebhookConfig
from webhook.operator.configreview import review_config_map
from webhook.operator.metrics import Metrics
from webhook.operator.reload import ConfigMetrics, ConfigReloader, LastGood, start_config
from webhook.operator.review import PodReviewer
from webhook.operator.settings import MAX_CONFIG_BYTES, load_config

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "config" / "policies.yaml"


def alias_bomb(levels: int) -> str:
    lines = ['a0: ["x","x","x","x","x","x","x","x","x"]']
    lines += [f"a{i}: [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(f"{line.split(':')[0]}: &{line.split(':')[0]} {line.split(': ', 1)[1]}" for line in lines)


@pytest.mark.parametrize("levels", [7, 8])
def test_an_alias_bomb_is_refused_before_it_expands(tmp_path: Path, levels: int) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(alias_bomb(levels))
    assert len(path.read_bytes()) < 1000
    started = time.process_time()
    with pytest.raises(ConfigError, match="anchors and aliases are not allowed") as caught:
        load_config(path, {})
    assert time.process_time() - started < 1.0 and len(str(caught.value)) < 300


def test_an_empty_or_comment_only_file_is_refused(tmp_path: Path) -> None:
    for text in ("", "# nothing\n", "---\n"):
        (tmp_path / "c.yaml").write_text(text)
        with pytest.raises(ConfigError, match="is empty"):
            load_config(tmp_path / "c.yaml", {})
    (tmp_path / "c.yaml").write_text("{}\n")
    assert load_config(tmp_path / "c.yaml", {}) == WebhookConfig.from_mapping({})


def test_a_file_over_the_configmap_size_is_refused_unparsed(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("#" * (MAX_CONFIG_BYTES + 1))
    with pytest.raises(ConfigError, match="at most 1048576"):
        load_config(tmp_path / "c.yaml", {})


def test_error_messages_stay_short_whatever_the_values(tmp_path: Path) -> None:
    policies = [{"name": f"p{i}", "match": {"domain": "d"}, "max-gpus": "x" * 2_000} for i in range(200)]
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"platform-limits": {"cpu": "9" * 50_000}, "policies": policies}))
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "c.yaml", {})
    message = str(caught.value)
    assert len(message) < 8 * 1024 and "more errors" in message


def test_the_largest_legal_config_parses_quickly(tmp_path: Path) -> None:
    policies = [
        {"name": f"p{i}", "match": {"project": f"proj{i}", "domain": "development"}, "max-gpus": 2}
        | {"platform-limits": {"cpu": "4", "memory": "16Gi"}, "allowed-accelerators": ["T4", "L4", "A100"]}
        for i in range(256)
    ]
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"policies": policies}))
    assert len(load_config(tmp_path / "c.yaml", {}).policies) == 256


def configmap_review(text: str | None, operation: str = "UPDATE") -> dict[str, Any]:
    obj: dict[str, Any] = {"metadata": {"name": "frw"}, "data": {} if text is None else {"config.yaml": text}}
    return {"apiVersion": "admission.k8s.io/v1", "request": {"uid": "u", "operation": operation, "object": obj}}


def test_the_validating_endpoint_refuses_what_a_replica_would_refuse() -> None:
    ok = review_config_map(configmap_review(EXAMPLE.read_text()))["response"]
    assert ok == {"uid": "u", "allowed": True}
    for text, reason in (
        ("policies:\n- name: a\n  match: {domain: d}\n  allowed-accelerators: [T40]\n", "'T40' is neither"),
        (alias_bomb(8), "anchors and aliases"),
        ("", "is empty"),
        ("platform-limits: {cpu: [", "not valid YAML"),
        (None, "data.config.yaml is missing"),
    ):
        response = review_config_map(configmap_review(text))["response"]
        assert response["allowed"] is False and response["status"]["code"] == 400
        assert reason in response["status"]["message"] and len(response["status"]["message"]) < 5000
    assert review_config_map(configmap_review(None, "DELETE"))["response"]["allowed"] is True


def test_validate_config_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("allowed-accelerators: [T4]\n")
    assert main(["validate-config", str(EXAMPLE)]) == 0
    assert "valid (hash " in capsys.readouterr().out
    assert main(["validate-config", str(EXAMPLE), str(bad)]) == 1
    assert "allowed-accelerators: unknown key" in capsys.readouterr().err


def test_a_restart_with_a_refused_file_serves_the_last_good_configuration(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path, last_good = tmp_path / "config.yaml", LastGood(tmp_path / "state" / "last-good.yaml")
    path.write_text(EXAMPLE.read_text())
    assert len(start_config(path, {}, last_good).policies) == 4  # served, so kept
    path.write_text("policies: [")
    caplog.set_level(logging.ERROR, logger="flyte_resources_webhook")
    assert len(start_config(path, {}, last_good).policies) == 4
    assert "serving the last good configuration" in caplog.text
    # the reloader then counts the refusal and says the file on disk is not what is served
    config = start_config(path, {}, last_good)
    metrics = Metrics()
    reloader = ConfigReloader(path, PodReviewer(config, metrics), ConfigMetrics(metrics.registry, config), environ={})
    assert reloader.check() == "invalid"
    assert metrics.registry.get_sample_value("flyte_resources_webhook_config_last_reload_successful") == 0
    # without a last good configuration, a refused file stops the start
    with pytest.raises(ConfigError):
        start_config(path, {}, LastGood(tmp_path / "none"))


def test_a_plain_file_is_read_once_it_stopped_changing(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("platform-limits: {cpu: '4'}\n")
    config = load_config(path, {})
    metrics = Metrics()
    reviewer = PodReviewer(config, metrics)
    reloader = ConfigReloader(path, reviewer, ConfigMetrics(metrics.registry, config), environ={})
    assert reloader.check() is None
    # a writer stopped half-way: a one-policy prefix of a longer list is valid YAML, but not read yet
    path.write_text("policies:\n- {name: a, match: {domain: d}, max-gpus: 1}\n")
    assert reloader.check() is None and reviewer.config is config
    path.write_text(EXAMPLE.read_text())
    assert reloader.check() is None  # changed again: wait once more
    assert reloader.check() == "applied"
    assert len(reviewer.config.policies) == 4
