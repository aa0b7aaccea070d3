"""The pod entry of the MutatingWebhookConfiguration: its name, rules and matchCondition, for the chart and `--dev`.

One source: `make generate` writes the chart's `templates/_generated.tpl` from this module (the CEL with its
prefix and namespace left to the template), and `run --dev` registers `pod_match_condition(...)` and `POD_RULES`.
"""

from __future__ import annotations

import copy
from typing import Any, Final

from webhook.engine.config import DEFAULT_NAMESPACE_TEMPLATE
from webhook.engine.policies import DOMAIN_LABEL, FLYTE2_MANAGED_LABEL, FLYTE_TASK_POD_LABELS, PROJECT_LABEL

POD_WEBHOOK_NAME: Final = "flyte-resources.flyte.org"

# Pods at CREATE, and an in-place resize (UPDATE of `pods/resize`): a resize changes a running pod's resources,
# so the platform limits hold for it too.
POD_RULES: Final[tuple[dict[str, Any], ...]] = (
    {"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"], "scope": "Namespaced"},
    {
        "operations": ["UPDATE"],
        "apiGroups": [""],
        "apiVersions": ["v1"],
        "resources": ["pods/resize"],
        "scope": "Namespaced",
    },
)

# A namespace template's placeholders and the CEL each becomes: the pod's label of that name.
NAMESPACE_PLACEHOLDERS: Final = tuple(
    (placeholder, f"' + object.metadata.labels['{label}'] + '")
    for placeholder, label in (("{{ project }}", PROJECT_LABEL), ("{{ domain }}", DOMAIN_LABEL))
)


def pod_rules() -> list[dict[str, Any]]:
    return copy.deepcopy(list(POD_RULES))


def cel_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def namespace_cel(template: str) -> str:
    """CEL for the namespace `template` names for a pod's `project` and `domain` labels (config validation keeps
    quotes and backslashes out of the template)."""
    quoted = "'" + template + "'"
    for placeholder, cel in NAMESPACE_PLACEHOLDERS:
        quoted = quoted.replace(placeholder, cel)
    return quoted


def match_condition_name(*, flyte_task_pods: bool = False) -> str:
    return (
        "has-flyte-resources-annotation-or-is-flyte-task-pod" if flyte_task_pods else "has-flyte-resources-annotation"
    )


def match_condition_expression(
    annotation_prefix: str, *, flyte_task_pods: bool = False, namespace_template: str = DEFAULT_NAMESPACE_TEMPLATE
) -> str:
    """CEL that is true for objects carrying at least one annotation starting with the prefix; with
    `flyte_task_pods` also for Flyte task pods (`webhook.engine.policies.is_flyte_task_pod`: their `project` and
    `domain` labels in the namespace `namespace_template` names)."""
    annotated = (
        "has(object.metadata.annotations) && "
        f"object.metadata.annotations.exists(k, k.startsWith({cel_string(annotation_prefix)}))"
    )
    if not flyte_task_pods:
        return annotated
    labelled = " && ".join(f"{cel_string(key)} in object.metadata.labels" for key in FLYTE_TASK_POD_LABELS)
    if namespace_template:
        labelled += f" && request.namespace == {namespace_cel(namespace_template)}"
    managed = cel_string(FLYTE2_MANAGED_LABEL)
    flyte2 = f"{managed} in object.metadata.labels && object.metadata.labels[{managed}] == 'true'"
    return f"({annotated}) || (has(object.metadata.labels) && (({labelled}) || ({flyte2})))"


def pod_match_condition(
    annotation_prefix: str, *, flyte_task_pods: bool = False, namespace_template: str = DEFAULT_NAMESPACE_TEMPLATE
) -> dict[str, str]:
    return {
        "name": match_condition_name(flyte_task_pods=flyte_task_pods),
        "expression": match_condition_expression(
            annotation_prefix, flyte_task_pods=flyte_task_pods, namespace_template=namespace_template
        ),
    }
