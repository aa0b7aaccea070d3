"""Policy resolution: Flyte's precedence (workflow > project+domain > project > global), key-by-key merge."""

from __future__ import annotations

from typing import Any

import pytest

from webhook.engine.config import ConfigError, WebhookConfig, sanitize_label_value
from webhook.engine.policies import PodFacts, is_flyte_task_pod, matched_label_keys, pod_facts, resolve

GLOBAL = {"platform-limits": {"cpu": "8", "memory": "32Gi"}, "default-requests": {"cpu": "500m"}}
POLICIES: list[dict[str, Any]] = [
    {"name": "labelled", "match": {"labels": {"team": "vision"}}, "platform-limits": {"cpu": "7"}},
    {"name": "dev", "match": {"domain": "development"}, "platform-limits": {"cpu": "2"}},
    {"name": "ml", "match": {"project": "ml"}, "platform-limits": {"memory": "16Gi"}},
    {
        "name": "ml-dev",
        "match": {"project": "ml", "domain": "development"},
        "default-requests": {"memory": "1Gi"},
    },
    {
        "name": "train",
        "match": {"project": "ml", "domain": "development", "workflow": "workflows.Train.wf"},
        "on-limit-exceeded": "reject",
    },
]
CONFIG = WebhookConfig.from_mapping({**GLOBAL, "policies": POLICIES})


def facts(namespace: str | None = None, **labels: str) -> PodFacts:
    """A pod's facts with its labels taken at their word (no namespace template): precedence alone."""
    pod = {"metadata": {"labels": {k.replace("_", "-"): v for k, v in labels.items()}}}
    return pod_facts(pod, namespace, "")


@pytest.mark.parametrize(
    ("pod", "policy"),
    [
        (facts(project="ml", domain="development", workflow_name="workflows-train-wf"), "train"),
        (facts(project="ml", domain="development", workflow_name="other"), "ml-dev"),
        (facts(project="ml", domain="production"), "ml"),
        (facts(project="web", domain="development"), "dev"),
        (facts(project="web", domain="production", team="vision"), "labelled"),
        (facts(project="web", domain="production"), None),
        (facts(), None),
    ],
)
def test_the_most_specific_policy_wins(pod: PodFacts, policy: str | None) -> None:
    resolved = resolve(CONFIG, pod)
    assert (resolved.policy.name if resolved.policy else None) == policy


def test_list_order_does_not_decide_between_levels() -> None:
    reversed_config = WebhookConfig.from_mapping({**GLOBAL, "policies": POLICIES[::-1]})
    pod = facts(project="ml", domain="development", workflow_name="workflows-train-wf", team="vision")
    assert resolve(reversed_config, pod).policy.name == "train"  # type: ignore[union-attr]
    assert resolve(CONFIG, pod).policy.name == "train"  # type: ignore[union-attr]


def test_within_one_level_the_first_entry_wins() -> None:
    config = WebhookConfig.from_mapping(
        {
            "policies": [
                {"name": "first", "match": {"domain": "development"}, "max-gpus": 1},
                {"name": "second", "match": {"domain": "development"}, "max-gpus": 4},
            ]
        }
    )
    assert resolve(config, facts(domain="development")).policy.name == "first"  # type: ignore[union-attr]


def test_keys_merge_one_by_one_onto_the_global_config() -> None:
    ml_dev = resolve(CONFIG, facts(project="ml", domain="development")).config
    # the policy's memory default joins the global cpu default; limits and the rest stay global
    assert ml_dev.default_requests == {"cpu": "500m", "memory": "1Gi"}
    assert ml_dev.platform_limits == {"cpu": "8", "memory": "32Gi"}
    assert ml_dev.on_limit_exceeded == "clamp"
    dev = resolve(CONFIG, facts(project="web", domain="development")).config
    assert dev.platform_limits == {"cpu": "2", "memory": "32Gi"}
    train = resolve(CONFIG, facts(project="ml", domain="development", workflow_name="workflows-train-wf")).config
    # like flyteadmin, only the most specific match counts: train's level does not inherit ml-dev's defaults
    assert train.on_limit_exceeded == "reject" and train.default_requests == {"cpu": "500m"}
    assert train.gpu_device_node_label == CONFIG.gpu_device_node_label


def test_a_merged_config_is_computed_once() -> None:
    pod = facts(project="ml", domain="production")
    assert resolve(CONFIG, pod).config is resolve(CONFIG, pod).config
    assert resolve(CONFIG, facts()).config is CONFIG


def test_namespace_counts_as_project_and_domain() -> None:
    config = WebhookConfig.from_mapping(
        {
            "policies": [
                {"name": "ml", "match": {"project": "ml"}, "max-gpus": 8},
                {"name": "ns", "match": {"namespace": "ml-development"}, "max-gpus": 2},
            ]
        }
    )
    assert resolve(config, facts("ml-development", project="ml")).policy.name == "ns"  # type: ignore[union-attr]
    assert resolve(config, facts("ml-production", project="ml")).policy.name == "ml"  # type: ignore[union-attr]


def test_workflow_is_compared_as_flytepropeller_writes_the_label() -> None:
    assert sanitize_label_value("workflows.Train_Model.wf") == "workflows-train-model-wf"
    assert sanitize_label_value("a_-b") == "a--b"  # one dash per run of other characters, as Go's regexp
    assert sanitize_label_value("__x__") == "x"
    assert len(sanitize_label_value("w" * 100)) == 63


def test_pod_facts_and_flyte_task_pods() -> None:
    pod = {"metadata": {"labels": {"project": "p", "domain": "d", "task-name": "t", "n": 1}}}
    found = pod_facts(pod, "p-d")
    assert found.namespace == "p-d"
    assert is_flyte_task_pod(found)
    config = WebhookConfig.from_mapping({"policies": [{"name": "n", "match": {"labels": {"n": "1"}}}]})
    assert resolve(config, found).policy is None  # a label value that is not a string equals no policy's
    assert is_flyte_task_pod(PodFacts("x", {"flyte.org/managed": "true"}))
    assert not is_flyte_task_pod(PodFacts("p-d", {"project": "p", "domain": "d"}, "p", "d"))
    assert not is_flyte_task_pod(PodFacts("x", {"flyte.org/managed": "false"}))


TEMPLATE = "{{ project }}-{{ domain }}"


def test_project_and_domain_labels_count_only_in_their_flyte_namespace() -> None:
    labels = {"project": "ml", "domain": "production", "task-name": "t"}
    pod = {"metadata": {"namespace": "ml-development", "labels": labels}}
    spoofed = pod_facts(pod, None, TEMPLATE)
    assert (spoofed.project, spoofed.domain) == (None, None) and not is_flyte_task_pod(spoofed)
    config = WebhookConfig.from_mapping(
        {"policies": [{"name": "prod", "match": {"domain": "production"}, "max-gpus": 8}]}
    )
    assert resolve(config, spoofed).policy is None
    honest = pod_facts({"metadata": {"namespace": "ml-production", "labels": labels}}, None, TEMPLATE)
    assert resolve(config, honest).policy is not None and is_flyte_task_pod(honest)
    assert pod_facts(pod, None, "flyte-{{ project }}").project is None
    assert pod_facts(pod, None, "").project == "ml"  # no template: the labels alone
    assert pod_facts({"metadata": {"namespace": "own", "labels": "x"}}, "review").namespace == "own"
    assert pod_facts({"metadata": {"labels": "x"}}).labels == {}


def test_matched_label_keys_include_the_labels_policies_read() -> None:
    keys = matched_label_keys(CONFIG)
    assert {"project", "domain", "workflow-name", "task-name", "flyte.org/managed", "team"} == set(keys)


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ({"name": "x", "match": {}}, "match needs at least one of"),
        ({"name": "x", "match": {"domain": "d"}, "allowed-accelerators": ["A999"]}, "'A999' is neither"),
        ({"name": "x", "match": {"domain": "d"}, "platform-limits": {"cpu": "lots"}}, "policies.0.platform-limits"),
        ({"name": "x", "match": {"domain": "d"}, "max-gpus": -1}, "policies.0.max-gpus"),
        ({"name": "x", "match": {"domain": "d"}, "shared-memory": "0"}, "above zero"),
        ({"name": "x", "match": {"domain": "d"}, "gpus": 1}, "policies.0.gpus: unknown key"),
        ({"match": {"domain": "d"}}, "policies.0.name"),
    ],
)
def test_invalid_policies_are_refused_naming_the_field(policy: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match="invalid configuration") as caught:
        WebhookConfig.from_mapping({"policies": [policy]})
    assert message in str(caught.value)


def test_policy_names_are_unique() -> None:
    twice = [{"name": "a", "match": {"domain": "d"}}, {"name": "a", "match": {"domain": "e"}}]
    with pytest.raises(ConfigError, match="used twice"):
        WebhookConfig.from_mapping({"policies": twice})


def test_accelerators_by_name_device_or_class_are_accepted() -> None:
    config = WebhookConfig.from_mapping(
        {"policies": [{"name": "a", "match": {"domain": "d"}, "allowed-accelerators": ["T4", "nvidia-l4", "TPU"]}]}
    )
    assert config.policies[0].allowed_accelerators == ["T4", "nvidia-l4", "TPU"]
    assert config.policies[0].changed_keys == ["allowed-accelerators"]


def test_the_readme_worked_example_resolves_as_its_table_says() -> None:
    import re
    from pathlib import Path

    import yaml

    section = (Path(__file__).parents[2] / "README.md").read_text().split("## Policies", 1)[1].split("\n## ", 1)[0]
    example = WebhookConfig.from_mapping(yaml.safe_load(re.findall(r"```yaml\n(.*?)```", section, re.S)[0]))
    rows = [line for line in section.splitlines() if line.startswith("| `") and "`, `" in line.split("|")[1]]
    assert len(rows) == 5
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        labels = re.findall(r"`([^`]+)`", cells[0])
        pod = facts(project=labels[0], domain=labels[1], workflow_name=labels[2] if len(labels) > 2 else "x")
        resolved = resolve(example, pod)
        named = re.match(r"`([^`]+)`", cells[1])
        assert (resolved.policy.name if resolved.policy else None) == (named.group(1) if named else None), row
        for cell, actual in ((cells[2], resolved.config.default_requests), (cells[3], resolved.config.platform_limits)):
            shown = dict(re.findall(r"([\w./-]+) (\w+)", cell.replace("*", "")))
            assert shown == actual, row
