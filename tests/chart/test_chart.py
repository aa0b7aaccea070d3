"""Chart checks that need no API server: lint, render, schema, the webhook configuration, manifests/, README.

helm comes from $FRW_BIN_DIR (`make control-plane`); without it these tests fail, they never skip.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from hack import manifests
from webhook.cli import build_parser
from webhook.engine.config import WebhookConfig

CHART = manifests.CHART_DIR
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
RELEASE = "flyte-resources-webhook"
NAMESPACE = "flyte-resources-webhook"
WEBHOOK_NAME = "flyte-resources.flyte.org"
CERT_DIR = "/etc/flyte-resources-webhook/certs"
CLUSTER_SCOPED = {
    "ClusterRole",
    "ClusterRoleBinding",
    "MutatingWebhookConfiguration",
    "Namespace",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
}


# ----------------------------------------------------------------------------------------------- helpers


def helm() -> str:
    binary = manifests.bin_dir() / "helm"
    if not os.access(binary, os.X_OK):
        pytest.fail(f"helm not found at {binary}: run `make control-plane` (or point FRW_BIN_DIR at a helm v3.x/v4.x)")
    return str(binary)


def run_helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([helm(), *args], capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        pytest.fail(f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def _set_args(values: dict[str, Any] | None) -> list[str]:
    if not values:
        return []
    return ["--set-json", *[f"{key}={json.dumps(value)}" for key, value in values.items()]]


@cache
def _render(values_file: str | None, set_json: tuple[str, ...], namespace: str) -> str:
    args = ["template", RELEASE, str(CHART), "--namespace", namespace]
    if values_file:
        args += ["--values", values_file]
    for item in set_json:
        args += ["--set-json", item]
    return run_helm(*args).stdout


def render(values_file: Path | None = None, namespace: str = NAMESPACE, **values: Any) -> list[dict[str, Any]]:
    """Rendered documents; keyword values are dotted paths with `__` for dots (`webhook__failurePolicy`)."""
    set_json = tuple(f"{key.replace('__', '.')}={json.dumps(value)}" for key, value in values.items())
    text = _render(str(values_file) if values_file else None, set_json, namespace)
    return [doc for doc in yaml.safe_load_all(text) if doc]


def render_error(namespace: str = NAMESPACE, **values: Any) -> str:
    set_json = [f"{key.replace('__', '.')}={json.dumps(value)}" for key, value in values.items()]
    args = ["template", RELEASE, str(CHART), "--namespace", namespace]
    for item in set_json:
        args += ["--set-json", item]
    proc = run_helm(*args, check=False)
    assert proc.returncode != 0, f"helm template accepted {values}"
    return proc.stderr


def pod_hook(mwc: dict[str, Any]) -> dict[str, Any]:
    """The webhook entry for pods (the other one checks the chart's ConfigMap)."""
    (hook,) = [h for h in mwc["webhooks"] if h["name"] == WEBHOOK_NAME]
    return hook


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}: {[d['kind'] for d in docs]}"
    return found[0]


def kinds(docs: list[dict[str, Any]]) -> list[str]:
    return [d["kind"] for d in docs]


def is_test_hook(doc: dict[str, Any]) -> bool:
    return (doc["metadata"].get("annotations") or {}).get("helm.sh/hook") == "test"


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return find(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]


def flag(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args else None


def values_yaml() -> dict[str, Any]:
    return yaml.safe_load((CHART / "values.yaml").read_text())


def schema() -> dict[str, Any]:
    return json.loads((CHART / "values.schema.json").read_text())


# ------------------------------------------------------------------------------------------ lint / render


def test_helm_binary_present() -> None:
    assert "v" in run_helm("version", "--short").stdout


@pytest.mark.parametrize("values_file", [None, *CI_VALUES], ids=lambda p: p.name if p else "no-values")
def test_helm_lint_strict(values_file: Path | None) -> None:
    args = ["lint", "--strict", str(CHART), "--namespace", NAMESPACE]
    if values_file:
        args += ["--values", str(values_file)]
    out = run_helm(*args).stdout
    assert "0 chart(s) failed" in out


def test_ci_values_cover_every_preset_and_mode() -> None:
    presets = set()
    modes = set()
    for path in CI_VALUES:
        values = yaml.safe_load(path.read_text()) or {}
        presets.add((values.get("config") or {}).get("preset", "eks"))
        modes.add((values.get("certificates") or {}).get("mode", "self-managed"))
        assert values.get("webhook", {}).get("matchConditions", {}).get("enabled", True) in (True, False)
    preset_choices = set(schema()["properties"]["config"]["properties"]["preset"]["enum"])
    assert presets >= preset_choices, f"no ci/*-values.yaml uses preset(s) {preset_choices - presets}"
    assert modes == {"self-managed", "cert-manager"}
    names = {p.name for p in CI_VALUES}
    assert {
        "default-values.yaml",
        "cert-manager-values.yaml",
        "ha-hardened-values.yaml",
        "match-conditions-off-values.yaml",
        "networkpolicy-servicemonitor-values.yaml",
    } <= names


@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.name)
def test_template_ci_values(values_file: Path) -> None:
    docs = render(values_file)
    for doc in docs:
        meta = doc["metadata"]
        assert doc.get("apiVersion") and meta.get("name"), doc
        assert len(meta["name"]) <= 63
        if doc["kind"] not in CLUSTER_SCOPED:
            assert meta.get("namespace"), f"{doc['kind']} {meta['name']} has no namespace"
    find(docs, "MutatingWebhookConfiguration")
    find(docs, "Deployment")
    find(docs, "Service")
    # The container's arguments are accepted by the webhook's own command line parser.
    args = build_parser().parse_args(container(docs)["args"])
    assert args.command == "run" and args.port == 9443 and args.probe_port == 8080
    assert str(args.cert_dir) == CERT_DIR and args.config == "/etc/flyte-resources-webhook/config/config.yaml"
    # The rendered config file is accepted by the webhook's own config model.
    (config_map,) = [d for d in docs if d["kind"] == "ConfigMap" and "config.yaml" in d["data"]]
    config = yaml.safe_load(config_map["data"]["config.yaml"]) or {}
    WebhookConfig.from_mapping(config)
    expected = (yaml.safe_load(values_file.read_text()) or {}).get("config") or {}
    assert config == {"preset": "eks", **expected}


# ------------------------------------------------------------------------------------------------ schema


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicas": 2}, "replicas"),
        ({"webhook": {"failurPolicy": "Fail"}}, "failurPolicy"),
        ({"config": {"gpu-resource": "nvidia.com/gpu"}}, "gpu-resource"),
        ({"config": {"preset": "aks"}}, "preset"),
        ({"config": {"mig-strategy": "none"}}, "mig-strategy"),
        ({"config": {"annotation-prefix": "resources.flyte.org"}}, "annotation-prefix"),
        ({"webhook": {"failurePolicy": "Maybe"}}, "failurePolicy"),
        ({"webhook": {"timeoutSeconds": 31}}, "timeoutSeconds"),
        ({"certificates": {"mode": "helm"}}, "mode"),
        ({"podAntiAffinity": {"mode": "always"}}, "mode"),
        ({"tests": {"image": {"name": "kubectl"}}}, "name"),
    ],
)
def test_schema_rejects_unknown_or_invalid_values(values: dict[str, Any], message: str) -> None:
    stderr = render_error(**values)
    assert message in stderr


def test_schema_is_closed_everywhere() -> None:
    """Every object the chart defines (not free-form Kubernetes maps) forbids unknown keys."""

    def walk(node: dict[str, Any], path: str) -> None:
        if node.get("type") == "object" and "properties" in node:
            assert node.get("additionalProperties") is False, f"{path or '<root>'} allows unknown keys"
            for key, child in node["properties"].items():
                walk(child, f"{path}.{key}" if path else key)
        if node.get("type") == "array" and isinstance(node.get("items"), dict):  # e.g. config.policies
            walk(node["items"], f"{path}[]")

    walk(schema(), "")


def test_the_config_schema_takes_what_the_config_model_takes() -> None:
    """The schema is generated from the model (`make generate`): values the model takes render, and a policy's
    numeric quantity is taken by both."""
    config = {
        "preset": "karpenter",
        "accelerator-device-classes": {"amazon_neuron": {"resource-name": "aws.amazon.com/neuroncore"}},
        "policies": [
            {"name": "p", "match": {"domain": "d"}, "platform-limits": {"cpu": 4}, "on-limit-exceeded": "reject"}
        ],
        "default-requests": {"memory": 1073741824},
    }
    WebhookConfig.from_mapping(config)
    assert yaml.safe_load(find(render(config=config), "ConfigMap")["data"]["config.yaml"]) == config
    assert "on-limit-exceeded" in render_error(
        config={"policies": [{"name": "p", "match": {"domain": "d"}, "on-limit-exceeded": "warn"}]}
    )


def test_policies_render_into_the_config_file_and_the_schema_refuses_bad_ones() -> None:
    policies = [
        {"name": "dev", "match": {"domain": "development"}, "max-gpus": 2, "allowed-accelerators": ["T4"]},
        {"name": "ml", "match": {"project": "ml", "labels": {"team": "a"}}, "platform-limits": {"cpu": 4}},
    ]
    docs = render(config={"preset": "eks", "policies": policies})
    config = yaml.safe_load(find(docs, "ConfigMap")["data"]["config.yaml"])
    assert config["policies"] == policies
    WebhookConfig.from_mapping(config)
    assert "gpus" in render_error(config={"policies": [{"name": "x", "match": {"domain": "d"}, "gpus": 1}]})
    assert "match" in render_error(config={"policies": [{"name": "x"}]})


def test_flyte_task_pods_widens_the_match_condition_to_flyte_task_pods() -> None:
    hook = pod_hook(find(render(config={"preset": "eks", "flyte-task-pods": True}), "MutatingWebhookConfiguration"))
    (condition,) = hook["matchConditions"]
    assert condition["name"] == "has-flyte-resources-annotation-or-is-flyte-task-pod"
    expression = condition["expression"]
    assert expression.startswith(
        "(has(object.metadata.annotations) && "
        "object.metadata.annotations.exists(k, k.startsWith('resources.flyte.org/'))) || "
    )
    for label in ("'project'", "'domain'", "'task-name'", "'flyte.org/managed'"):
        assert label in expression
    off = pod_hook(find(render(), "MutatingWebhookConfiguration"))
    assert [c["name"] for c in off["matchConditions"]] == ["has-flyte-resources-annotation"]
    # `run --dev` registers the same conditions: the chart's come from the same module (`make generate`)
    from webhook.operator import registration

    for hook_, on in ((hook, True), (off, False)):
        (rendered,) = hook_["matchConditions"]
        assert rendered == registration.pod_match_condition("resources.flyte.org/", flyte_task_pods=on)
    anywhere = pod_hook(
        find(render(config={"flyte-task-pods": True, "namespace-template": ""}), "MutatingWebhookConfiguration")
    )
    assert anywhere["matchConditions"] == [
        registration.pod_match_condition("resources.flyte.org/", flyte_task_pods=True, namespace_template="")
    ]
    custom = pod_hook(
        find(
            render(
                config={
                    "flyte-task-pods": True,
                    "namespace-template": "flyte-{{ project }}",
                    "annotation-prefix": "x.io/",
                }
            ),
            "MutatingWebhookConfiguration",
        )
    )
    assert custom["matchConditions"] == [
        registration.pod_match_condition("x.io/", flyte_task_pods=True, namespace_template="flyte-{{ project }}")
    ]
    assert hook["rules"] == registration.pod_rules()


def test_values_yaml_passes_schema_and_config_model() -> None:
    values = values_yaml()
    WebhookConfig.from_mapping(values["config"])
    assert set(values) <= set(schema()["properties"])


# ----------------------------------------------------------------------------- MutatingWebhookConfiguration


def test_mutating_webhook_configuration_defaults() -> None:
    docs = render()
    mwc = find(docs, "MutatingWebhookConfiguration")
    assert mwc["metadata"]["name"] == RELEASE
    assert "cert-manager.io/inject-ca-from" not in (mwc["metadata"].get("annotations") or {})
    hook = pod_hook(mwc)
    assert hook["name"] == WEBHOOK_NAME
    assert hook["clientConfig"] == {
        "service": {"name": RELEASE, "namespace": NAMESPACE, "port": 443, "path": "/flyte-resources"}
    }
    assert "caBundle" not in hook["clientConfig"]
    assert hook["rules"] == [
        {
            "operations": ["CREATE"],
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "resources": ["pods"],
            "scope": "Namespaced",
        },
        {
            "operations": ["UPDATE"],
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "resources": ["pods/resize"],
            "scope": "Namespaced",
        },
    ]
    assert hook["admissionReviewVersions"] == ["v1"]
    assert hook["sideEffects"] == "None"
    assert hook["matchPolicy"] == "Equivalent"
    assert hook["timeoutSeconds"] == 5
    assert hook["failurePolicy"] == "Fail"
    assert hook["reinvocationPolicy"] == "IfNeeded"
    assert hook["namespaceSelector"] == {
        "matchExpressions": [
            {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system", NAMESPACE]}
        ]
    }
    assert "objectSelector" not in hook
    assert hook["matchConditions"] == [
        {
            "name": "has-flyte-resources-annotation",
            "expression": "has(object.metadata.annotations) && "
            "object.metadata.annotations.exists(k, k.startsWith('resources.flyte.org/'))",
        }
    ]
    # The Service the webhook points at exists and maps 443 to the webhook port.
    service = find(docs, "Service", RELEASE)
    https = next(p for p in service["spec"]["ports"] if p["name"] == "https")
    assert (https["port"], https["targetPort"]) == (443, "https")
    ports = {p["name"]: p["containerPort"] for p in container(docs)["ports"]}
    assert ports == {"https": 9443, "metrics": 8080}


def test_mutating_webhook_configuration_knobs() -> None:
    docs = render(
        webhook__failurePolicy="Ignore",
        webhook__timeoutSeconds=2,
        webhook__reinvocationPolicy="Never",
        webhook__excludeNamespaces=["flyte", "kube-system"],
        webhook__namespaceSelector={
            "matchLabels": {"team": "ml"},
            "matchExpressions": [{"key": "skip", "operator": "DoesNotExist"}],
        },
        webhook__objectSelector={"matchLabels": {"flyte": "yes"}},
        webhook__matchConditions__extra=[{"name": "not-nodes", "expression": "true"}],
        webhook__annotations={"example.com/owner": "platform"},
        config={"annotation-prefix": "res.example.com/"},
        fullnameOverride="frw",
    )
    mwc = find(docs, "MutatingWebhookConfiguration")
    assert mwc["metadata"]["name"] == "frw"
    assert mwc["metadata"]["annotations"] == {"example.com/owner": "platform"}
    hook = pod_hook(mwc)
    assert (hook["failurePolicy"], hook["timeoutSeconds"], hook["reinvocationPolicy"]) == ("Ignore", 2, "Never")
    assert hook["clientConfig"]["service"]["name"] == "frw"
    assert hook["namespaceSelector"] == {
        "matchLabels": {"team": "ml"},
        "matchExpressions": [
            {
                "key": "kubernetes.io/metadata.name",
                "operator": "NotIn",
                "values": ["kube-system", NAMESPACE, "flyte"],
            },
            {"key": "skip", "operator": "DoesNotExist"},
        ],
    }
    assert hook["objectSelector"] == {"matchLabels": {"flyte": "yes"}}
    assert [c["name"] for c in hook["matchConditions"]] == ["has-flyte-resources-annotation", "not-nodes"]
    assert "k.startsWith('res.example.com/')" in hook["matchConditions"][0]["expression"]


def test_the_config_map_is_checked_at_edit_time_by_a_second_entry_that_never_blocks() -> None:
    mwc = find(render(), "MutatingWebhookConfiguration")
    (hook,) = [h for h in mwc["webhooks"] if h["name"] != WEBHOOK_NAME]
    assert hook["clientConfig"]["service"]["path"] == "/validate-config"
    assert hook["failurePolicy"] == "Ignore" and hook["reinvocationPolicy"] == "Never"
    assert hook["rules"][0]["resources"] == ["configmaps"] and hook["rules"][0]["operations"] == ["CREATE", "UPDATE"]
    assert hook["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": NAMESPACE}}
    assert hook["matchConditions"] == [
        {"name": "is-the-webhook-config", "expression": f"object.metadata.name == '{RELEASE}'"}
    ]
    config_map = find(render(), "ConfigMap")
    assert hook["objectSelector"]["matchLabels"].items() <= config_map["metadata"]["labels"].items()
    off = find(render(webhook__validateConfig__enabled=False), "MutatingWebhookConfiguration")
    assert [h["name"] for h in off["webhooks"]] == [WEBHOOK_NAME]


def test_match_conditions_can_be_turned_off() -> None:
    docs = render(webhook__matchConditions__enabled=False, webhook__failurePolicy="Ignore")
    hook = pod_hook(find(docs, "MutatingWebhookConfiguration"))
    assert "matchConditions" not in hook
    assert "enabled" in render_error(
        webhook__matchConditions={"enabled": False, "extra": [{"name": "x", "expression": "true"}]},
        webhook__failurePolicy="Ignore",
    )


UNSCOPED = "would send every pod of every namespace to the webhook"


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"webhook__excludeNamespaces": ["flyte"]},  # exclusions do not narrow enough: every other namespace
        {"webhook__objectSelector": {"matchLabels": {}}},
        {"webhook__namespaceSelector": {"matchExpressions": []}},
    ],
    ids=["no-selector", "only-exclusions", "empty-object-selector", "empty-namespace-selector"],
)
def test_no_match_conditions_with_fail_and_no_selector_is_refused(values: dict[str, Any]) -> None:
    stderr = render_error(webhook__matchConditions__enabled=False, webhook__failurePolicy="Fail", **values)
    assert UNSCOPED in stderr and "failurePolicy=Ignore" in stderr


@pytest.mark.parametrize(
    "values",
    [
        {"webhook__failurePolicy": "Ignore"},
        {"webhook__objectSelector": {"matchLabels": {"resources.flyte.org/enabled": "true"}}},
        {"webhook__objectSelector": {"matchExpressions": [{"key": "flyte", "operator": "Exists"}]}},
        {"webhook__namespaceSelector": {"matchLabels": {"flyte": "true"}}},
        {"webhook__namespaceSelector": {"matchExpressions": [{"key": "flyte", "operator": "Exists"}]}},
    ],
    ids=["ignore", "object-labels", "object-expressions", "namespace-labels", "namespace-expressions"],
)
def test_no_match_conditions_with_a_narrower_scope_renders(values: dict[str, Any]) -> None:
    hook = pod_hook(find(render(webhook__matchConditions__enabled=False, **values), "MutatingWebhookConfiguration"))
    assert "matchConditions" not in hook


# ---------------------------------------------------------------------------------------- certificates


def test_self_managed_mode() -> None:
    docs = render()
    args = container(docs)["args"]
    assert args[:13] == [
        "run",
        "--config",
        "/etc/flyte-resources-webhook/config/config.yaml",
        "--port",
        "9443",
        "--probe-port",
        "8080",
        "--cert-dir",
        CERT_DIR,
        "--log-format",
        "json",
        "--log-level",
        "info",
    ]
    assert flag(args, "--cert-mode") == "self-managed"
    assert flag(args, "--cert-secret") == f"{RELEASE}-tls"
    assert flag(args, "--webhook-config-name") == RELEASE
    assert flag(args, "--service-name") == RELEASE
    assert flag(args, "--namespace") == NAMESPACE
    assert flag(args, "--cert-check-interval") == "30"
    assert not [d for d in docs if d["apiVersion"].startswith("cert-manager.io/")]
    assert not [d for d in docs if d["kind"] == "Secret"], "the webhook creates its Secret, not the chart"

    role = find(docs, "Role", RELEASE)
    assert role["metadata"]["namespace"] == NAMESPACE
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": [f"{RELEASE}-tls"],
            # What webhook/operator/selfmanaged.py calls: read, replace (PUT), create. Never patch.
            "verbs": ["get", "update"],
        },
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
    ]
    cluster_role = find(docs, "ClusterRole", RELEASE)
    assert cluster_role["rules"] == [
        {
            "apiGroups": ["admissionregistration.k8s.io"],
            "resources": ["mutatingwebhookconfigurations"],
            "resourceNames": [RELEASE],
            # read and JSON-patch caBundle; never PUT the whole object.
            "verbs": ["get", "patch"],
        }
    ]
    for binding in (find(docs, "RoleBinding", RELEASE), find(docs, "ClusterRoleBinding", RELEASE)):
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": RELEASE, "namespace": NAMESPACE}]

    volumes = {v["name"]: v for v in find(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert "emptyDir" in volumes["certs"]
    mounts = {m["name"]: m["mountPath"] for m in container(docs)["volumeMounts"]}
    assert mounts["certs"] == CERT_DIR


def test_cert_manager_mode() -> None:
    docs = [d for d in render(certificates__mode="cert-manager") if not is_test_hook(d)]
    webhook_rbac = [d for d in docs if d["kind"] in ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")]
    assert [d["metadata"]["name"] for d in webhook_rbac] == [f"{RELEASE}-test"] * 2  # the helm test pod's only
    args = container(docs)["args"]
    assert "--cert-mode" not in args and "--cert-secret" not in args
    mwc = find(docs, "MutatingWebhookConfiguration")
    assert mwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == f"{NAMESPACE}/{RELEASE}-tls"
    serving = find(docs, "Certificate", f"{RELEASE}-tls")
    assert serving["spec"]["secretName"] == f"{RELEASE}-tls"
    assert serving["spec"]["dnsNames"] == [RELEASE, f"{RELEASE}.{NAMESPACE}", f"{RELEASE}.{NAMESPACE}.svc"]
    assert serving["spec"]["issuerRef"]["name"] == f"{RELEASE}-ca"
    assert (serving["spec"]["duration"], serving["spec"]["renewBefore"]) == ("8760h", "720h")
    ca = find(docs, "Certificate", f"{RELEASE}-ca")
    assert ca["spec"]["isCA"] is True
    assert ca["spec"]["issuerRef"]["name"] == f"{RELEASE}-selfsigned"
    assert find(docs, "Issuer", f"{RELEASE}-selfsigned")["spec"] == {"selfSigned": {}}
    assert find(docs, "Issuer", f"{RELEASE}-ca")["spec"] == {"ca": {"secretName": f"{RELEASE}-ca"}}
    volumes = {v["name"]: v for v in find(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["certs"]["secret"]["secretName"] == f"{RELEASE}-tls"


def test_cert_manager_with_existing_issuer() -> None:
    docs = render(
        certificates__mode="cert-manager",
        certificates__secretName="my-cert",
        certificates__certManager__issuerRef={"name": "corp", "kind": "ClusterIssuer", "group": "cert-manager.io"},
    )
    assert [d["metadata"]["name"] for d in docs if d["apiVersion"].startswith("cert-manager.io/")] == ["my-cert"]
    assert find(docs, "Certificate")["spec"]["issuerRef"]["kind"] == "ClusterIssuer"
    annotations = find(docs, "MutatingWebhookConfiguration")["metadata"]["annotations"]
    assert annotations["cert-manager.io/inject-ca-from"] == f"{NAMESPACE}/my-cert"


# ------------------------------------------------------------------------------------------- deployment


def test_deployment_is_hardened_and_highly_available() -> None:
    docs = render()
    deployment = find(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    c = container(docs)
    assert deployment["spec"]["replicas"] == 2
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 65532
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["lifecycle"]["preStop"]["httpGet"] == {"path": "/drain?seconds=5", "port": "metrics"}
    assert pod["terminationGracePeriodSeconds"] > 5
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    anti = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["podAffinityTerm"]["labelSelector"]["matchLabels"] == selector
    assert pod["topologySpreadConstraints"][0]["labelSelector"]["matchLabels"] == selector
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert {"/tmp", CERT_DIR, "/etc/flyte-resources-webhook/config"} <= mounts
    # kubelet never updates a subPath mount: the config must be a directory for live reloads
    assert not [m for m in c["volumeMounts"] if m["name"] == "config" and "subPath" in m]
    assert "priorityClassName" not in pod
    pdb = find(docs, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == selector


def test_single_replica_has_no_pdb_and_warns() -> None:
    docs = render(replicaCount=1)
    assert "PodDisruptionBudget" not in kinds(docs)
    notes = run_helm(
        "install", RELEASE, str(CHART), "--dry-run=client", "--namespace", NAMESPACE, "--set", "replicaCount=1"
    ).stdout
    assert "WARNING: replicaCount is 1" in notes


def test_ha_values() -> None:
    docs = render(CHART / "ci" / "ha-hardened-values.yaml")
    pod = find(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert "requiredDuringSchedulingIgnoredDuringExecution" in pod["affinity"]["podAntiAffinity"]
    assert "nodeAffinity" in pod["affinity"]
    assert len(pod["topologySpreadConstraints"]) == 2
    assert all("labelSelector" in t for t in pod["topologySpreadConstraints"])
    image = pod["containers"][0]["image"]
    assert image.startswith("ghcr.io/") and "@sha256:" in image


def test_config_checksum_rolls_pods() -> None:
    def checksum(**values: Any) -> str:
        annotations = find(render(**values), "Deployment")["spec"]["template"]["metadata"]["annotations"]
        return str(annotations["checksum/config"])

    assert checksum() != checksum(config={"preset": "gke"})
    assert checksum() == checksum(replicaCount=3)


def test_config_nulls_are_dropped() -> None:
    docs = render(config={"preset": "gke", "gpu-unpartitioned-toleration": None, "on-error": "allow"})
    assert yaml.safe_load(find(docs, "ConfigMap")["data"]["config.yaml"]) == {"preset": "gke", "on-error": "allow"}


# ----------------------------------------------------------------------------- optional resources / test


def test_networkpolicy_and_servicemonitor() -> None:
    docs = render(CHART / "ci" / "networkpolicy-servicemonitor-values.yaml")
    policy = find(docs, "NetworkPolicy")
    webhook_rule, metrics_rule = policy["spec"]["ingress"]
    assert webhook_rule["ports"] == [{"port": 9443, "protocol": "TCP"}]
    assert webhook_rule["from"] == [{"ipBlock": {"cidr": "10.0.0.10/32"}}, {"ipBlock": {"cidr": "10.0.0.11/32"}}]
    assert metrics_rule["ports"] == [{"port": 8080, "protocol": "TCP"}] and metrics_rule["from"]
    monitor = find(docs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    assert not {"NetworkPolicy", "ServiceMonitor"} & set(kinds(render()))


def test_networkpolicy_defaults_restrict() -> None:
    """Enabled with only the required CIDR: nothing reaches the metrics port but the node, and egress is limited
    to the API server and DNS. No rule without `from`/`to` (which would allow every peer)."""
    spec = find(
        render(networkPolicy__enabled=True, networkPolicy__controlPlaneCIDRs=["192.0.2.0/28"]), "NetworkPolicy"
    )["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    (webhook_rule,) = spec["ingress"]
    assert webhook_rule == {
        "ports": [{"port": 9443, "protocol": "TCP"}],
        "from": [{"ipBlock": {"cidr": "192.0.2.0/28"}}],
    }
    api, dns = spec["egress"]
    assert api == {
        "ports": [{"port": 443, "protocol": "TCP"}, {"port": 6443, "protocol": "TCP"}],
        "to": [{"ipBlock": {"cidr": "192.0.2.0/28"}}],
    }
    assert [p["port"] for p in dns["ports"]] == [53, 53]
    assert dns["to"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
        }
    ]
    for rule in spec["ingress"]:
        assert rule.get("from")
    for rule in spec["egress"]:
        assert rule.get("to")


def test_networkpolicy_needs_the_control_plane_cidrs() -> None:
    stderr = render_error(networkPolicy__enabled=True)
    assert "networkPolicy.controlPlaneCIDRs" in stderr and "endpointslices" in stderr
    assert "controlPlaneCIDRs" in render_error(networkPolicy__enabled=True, networkPolicy__controlPlaneCIDRs=["x"])


def test_networkpolicy_extra_peers() -> None:
    spec = find(
        render(
            networkPolicy__enabled=True,
            networkPolicy__controlPlaneCIDRs=["192.0.2.0/28"],
            networkPolicy__webhookFrom=[{"namespaceSelector": {"matchLabels": {"apiserver": "true"}}}],
            networkPolicy__dnsTo=[],
            networkPolicy__extraEgress=[{"to": [{"ipBlock": {"cidr": "198.51.100.0/24"}}]}],
            networkPolicy__apiServerPorts=[8443],
        ),
        "NetworkPolicy",
    )["spec"]
    assert spec["ingress"][0]["from"][1] == {"namespaceSelector": {"matchLabels": {"apiserver": "true"}}}
    api, extra = spec["egress"]
    assert api["ports"] == [{"port": 8443, "protocol": "TCP"}]
    assert extra == {"to": [{"ipBlock": {"cidr": "198.51.100.0/24"}}]}


# --------------------------------------------------------------------------- the webhook's own edit policy


def test_webhook_edit_policy_binds_the_service_account_to_its_configuration() -> None:
    docs = render()
    policy = find(docs, "ValidatingAdmissionPolicy", RELEASE)
    spec = policy["spec"]
    assert policy["apiVersion"] == "admissionregistration.k8s.io/v1"
    assert spec["failurePolicy"] == "Fail"
    (rule,) = spec["matchConstraints"]["resourceRules"]
    assert rule["resources"] == ["mutatingwebhookconfigurations"] and rule["resourceNames"] == [RELEASE]
    assert rule["operations"] == ["UPDATE"]
    (condition,) = spec["matchConditions"]
    assert condition["expression"] == f"request.userInfo.username == 'system:serviceaccount:{NAMESPACE}:{RELEASE}'"
    # Every MutatingWebhook field but caBundle is compared (the API server runs the CEL: tests/e2e).
    fields = re.findall(r"o\.(?:clientConfig\.)?\?(\w+) == w\.", spec["validations"][1]["expression"])
    assert set(fields) == {
        "url",
        "service",
        "rules",
        "failurePolicy",
        "matchPolicy",
        "namespaceSelector",
        "objectSelector",
        "sideEffects",
        "timeoutSeconds",
        "admissionReviewVersions",
        "reinvocationPolicy",
        "matchConditions",
    }
    assert not [v for v in spec["validations"] if "caBundle" in v["expression"]]
    binding = find(docs, "ValidatingAdmissionPolicyBinding", RELEASE)
    assert binding["spec"] == {"policyName": RELEASE, "validationActions": ["Deny"]}

    named = render(serviceAccount__name="frw-sa", fullnameOverride="frw")
    expression = find(named, "ValidatingAdmissionPolicy", "frw")["spec"]["matchConditions"][0]["expression"]
    assert expression.endswith(f":{NAMESPACE}:frw-sa'")
    assert find(named, "ValidatingAdmissionPolicy", "frw")["spec"]["matchConstraints"]["resourceRules"][0][
        "resourceNames"
    ] == ["frw"]
    # and it may create only its own certificate Secret (RBAC cannot name what `create` makes)
    secret_policy = find(docs, "ValidatingAdmissionPolicy", RELEASE + "-secret")["spec"]
    assert secret_policy["matchConditions"] == spec["matchConditions"]
    assert f"object.metadata.name == '{RELEASE}-tls'" in secret_policy["validations"][0]["expression"]
    assert find(docs, "ValidatingAdmissionPolicyBinding", RELEASE + "-secret")["spec"]["validationActions"] == ["Deny"]


def test_webhook_edit_policy_can_be_turned_off_and_is_absent_with_cert_manager() -> None:
    off = render(certificates__selfManaged__webhookEditPolicy__enabled=False)
    cert_manager = render(certificates__mode="cert-manager")
    for docs in (off, cert_manager):
        assert not {"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"} & set(kinds(docs))


def test_webhook_edit_policy_on_an_older_cluster_is_a_clear_error() -> None:
    old = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--kube-version", "1.29.4"]
    proc = run_helm(*old, check=False)
    assert proc.returncode != 0
    assert "needs Kubernetes >= 1.30" in proc.stderr and "webhookEditPolicy.enabled=false" in proc.stderr
    off = run_helm(*old, "--set", "certificates.selfManaged.webhookEditPolicy.enabled=false").stdout
    assert "ValidatingAdmissionPolicy" not in off
    assert "ValidatingAdmissionPolicy" in run_helm(*old[:-1], "1.30.0").stdout


def test_cert_check_interval_value_matches_the_cli_default() -> None:
    from webhook.operator.selfmanaged import DEFAULT_CHECK_INTERVAL

    assert values_yaml()["certificates"]["selfManaged"]["checkIntervalSeconds"] == DEFAULT_CHECK_INTERVAL
    assert build_parser().parse_args(["run"]).cert_check_interval == DEFAULT_CHECK_INTERVAL
    args = container(render(certificates__selfManaged__checkIntervalSeconds=45))["args"]
    assert build_parser().parse_args(args).cert_check_interval == 45
    assert "checkIntervalSeconds" in render_error(certificates__selfManaged__checkIntervalSeconds=3600 * 2)


def test_certificate_lifetime_values_match_the_cli_defaults() -> None:
    from webhook.operator.selfmanaged import SelfManagedSettings

    defaults = build_parser().parse_args(container(render())["args"])
    settings = SelfManagedSettings("s", "n", "w", "svc", Path("/tmp"))
    assert defaults.cert_validity == settings.validity.total_seconds() == 365 * 86400
    assert defaults.cert_renew_before == settings.renew_before.total_seconds() == 30 * 86400
    short = render(certificates__selfManaged__duration="10m", certificates__selfManaged__renewBefore="1h30m")
    args = build_parser().parse_args(container(short)["args"])
    assert (args.cert_validity, args.cert_renew_before) == (600, 5400)
    assert "duration" in render_error(certificates__selfManaged__duration="10 minutes")


def test_helm_test_pod() -> None:
    # One test hook, so `helm test` lists one suite; its ServiceAccount and Role are ordinary release objects
    # (created before any test runs, removed by `helm uninstall`).
    docs = [d for d in render() if is_test_hook(d)]
    assert kinds(docs) == ["Pod"]
    test_name = docs[0]["metadata"]["name"]
    rbac = [d for d in render() if d["metadata"]["name"] == test_name and not is_test_hook(d)]
    assert sorted(kinds(rbac)) == ["Role", "RoleBinding", "ServiceAccount"]
    assert all("helm.sh/hook" not in (d["metadata"].get("annotations") or {}) for d in rbac)
    docs += rbac
    pod = find(docs, "Pod")
    assert pod["metadata"]["namespace"] == NAMESPACE
    args = pod["spec"]["containers"][0]["args"]
    assert args[0] == "run"
    assert "--dry-run=server" in args and "--namespace=default" in args
    assert "--allow-missing-template-keys=false" in args
    assert any(a.startswith("--annotations=resources.flyte.org/resources=") for a in args)
    assert any("resources\\.flyte\\.org/applied" in a for a in args)
    role = find(docs, "Role")
    assert role["metadata"]["namespace"] == "default"
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["create"]}]
    # The dry-run namespace must reach the webhook, or the test pod is not rendered.
    for values in ({"tests__namespace": NAMESPACE}, {"tests__enabled": False}):
        assert not [d for d in render(**values) if d["metadata"]["name"] == test_name]


def test_bad_annotation_prefix_fails_render() -> None:
    assert "annotation-prefix" in render_error(config={"annotation-prefix": "Resources/"})


# --------------------------------------------------------------------------------------- manifests, README


def test_manifests_in_sync_with_chart() -> None:
    helm()
    problems = manifests.check()
    assert not problems, "\n".join(problems) + "\nrun `make manifests`"


def _leaf_paths(node: Any, prefix: str = "") -> list[str]:
    if isinstance(node, dict) and node:
        paths = []
        for key, value in node.items():
            paths += _leaf_paths(value, f"{prefix}.{key}" if prefix else str(key))
        return paths
    return [prefix]


def test_readme_lists_every_value() -> None:
    readme = (CHART / "README.md").read_text()
    table_keys = set(re.findall(r"^\| `([^`]+)` \|", readme, flags=re.MULTILINE))
    values = values_yaml()
    # Free-form maps whose defaults are Kubernetes objects are documented as a whole.
    whole = ("podSecurityContext", "securityContext", "resources", "updateStrategy")
    # The `config.*` rows are generated from the config model (`make generate`, checked by `make lint`).
    expected = {p for p in _leaf_paths(values) if not p.startswith(whole) and not p.startswith("config.")}
    expected |= set(whole)
    missing = sorted(expected - table_keys)
    assert not missing, f"chart README values table lacks: {missing}"
    unknown = sorted(
        k for k in table_keys - expected if not any(k.startswith(w + ".") for w in whole) and not k.startswith("config")
    )
    assert not unknown, f"chart README documents values that values.yaml does not have: {unknown}"
    for section in ("helm install", "cert-manager", "helm uninstall", "helm upgrade", "kind-test"):
        assert section in readme, f"chart README lacks {section!r}"


# ------------------------------------------------------------------------------------------- kind script


def test_kind_script_fails_loudly_without_a_docker_engine(tmp_path: Path) -> None:
    """`make kind-test` must never pass where it cannot run: a docker CLI without an engine exits non-zero."""
    fake = tmp_path / "bin"
    fake.mkdir()
    docker = fake / "docker"
    docker.write_text("#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n")
    docker.chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}:/usr/bin:/bin"}
    proc = subprocess.run(
        ["bash", str(manifests.REPO_ROOT / "hack" / "kind-test.sh")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode != 0
    assert "no Docker engine" in proc.stderr
    assert "FAILED (nothing was tested)" in proc.stderr


def test_packaged_chart_is_versioned_and_pulls_the_image_it_was_packaged_for(tmp_path: Path) -> None:
    from hack.package import package, project_version

    archive = package("0.1.0", "registry.example.com/ml/frw", "0.1.0-rc1", tmp_path, helm=helm())
    assert archive.name == f"flyte-resources-webhook-{project_version()}.tgz"
    chart = yaml.safe_load(run_helm("show", "chart", str(archive)).stdout)
    assert (chart["version"], chart["appVersion"]) == ("0.1.0", "0.1.0-rc1")
    rendered = list(yaml.safe_load_all(run_helm("template", RELEASE, str(archive)).stdout))
    deployment = next(d for d in rendered if d and d["kind"] == "Deployment")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example.com/ml/frw:0.1.0-rc1"
    assert "ci/" not in run_helm("show", "values", str(archive)).stdout  # the CI value files stay out
