"""Self-managed certificates against the real kube-apiserver: the Secret, optimistic concurrency between
replicas, renewal, and caBundle patching of a real MutatingWebhookConfiguration.

The webhook configurations created here never match anything real (an objectSelector on a label no object
carries, `failurePolicy: Ignore`) so they cannot disturb the other e2e tests, and they are deleted afterwards.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from hack.cluster.processes import free_port, http_get
from webhook.operator import certs, devmode, selfmanaged
from webhook.operator.selfmanaged import (
    SelfManagedSettings,
    ensure_certificates,
    rotate_forever,
    service_dns_names,
)

DAY = timedelta(days=1)
NEVER = {"e2e.flyte.org/never-matches": "true"}


def _mwc_body(name: str, entries: int, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            {
                "name": f"e{i}.selfmanaged.e2e.flyte.org",
                "clientConfig": {
                    "service": {"name": "frw", "namespace": namespace, "path": "/flyte-resources", "port": 443}
                },
                "rules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE"],
                        "resources": ["configmaps"],
                        "scope": "Namespaced",
                    }
                ],
                "objectSelector": {"matchLabels": NEVER},
                "failurePolicy": "Ignore",
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "timeoutSeconds": 1,
            }
            for i in range(entries)
        ],
    }


@pytest.fixture
def admission(api_client: Any) -> k8s.AdmissionregistrationV1Api:
    return k8s.AdmissionregistrationV1Api(api_client)


@pytest.fixture
def mwc(admission: k8s.AdmissionregistrationV1Api, namespace: str) -> Iterator[str]:
    """A two-entry MutatingWebhookConfiguration without caBundle, like the chart renders for self-managed."""
    name = f"frw-e2e-selfmanaged-{secrets.token_hex(3)}"
    admission.create_mutating_webhook_configuration(
        k8s.V1MutatingWebhookConfiguration.model_validate(_mwc_body(name, 2, namespace))
    )
    yield name
    try:
        admission.delete_mutating_webhook_configuration(name)
    except ApiException as e:
        if e.status != 404:
            raise


def _settings(api_client: Any, namespace: str, mwc: str, cert_dir: Path, **kw: Any) -> SelfManagedSettings:
    kw.setdefault("secret_name", "frw-certs")
    return SelfManagedSettings(
        namespace=namespace,
        webhook_config_name=mwc,
        service_name="frw",
        cert_dir=cert_dir,
        api_client=api_client,
        **kw,
    )


def _secret(core_v1: Any, namespace: str) -> k8s.V1Secret:
    return core_v1.read_namespaced_secret("frw-certs", namespace)


def _secret_data(secret: k8s.V1Secret) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}


def _ca_bundles(admission: k8s.AdmissionregistrationV1Api, name: str) -> list[bytes]:
    config = admission.read_mutating_webhook_configuration(name)
    return [base64.b64decode(w.client_config.ca_bundle or "") for w in config.webhooks or []]


def test_first_start_creates_the_secret_and_patches_ca_bundle(
    api_client: Any, core_v1: Any, admission: k8s.AdmissionregistrationV1Api, namespace: str, mwc: str, tmp_path: Path
) -> None:
    bundle = asyncio.run(ensure_certificates(_settings(api_client, namespace, mwc, tmp_path)))

    secret = _secret(core_v1, namespace)
    data = _secret_data(secret)
    assert secret.type == "kubernetes.io/tls"
    assert set(data) == {"ca.crt", "ca.key", "tls.crt", "tls.key"}
    assert data["tls.crt"] == bundle.cert_pem and data["ca.crt"] == bundle.ca_pem
    assert certs.signed_by(bundle.cert_pem, bundle.ca_pem)
    assert certs.cert_sans(bundle.cert_pem)[0] == set(service_dns_names("frw", namespace))

    assert _ca_bundles(admission, mwc) == [bundle.ca_pem, bundle.ca_pem]
    assert (tmp_path / "tls.crt").read_bytes() == bundle.cert_pem
    assert (tmp_path / "tls.key").read_bytes() == bundle.key_pem
    assert (tmp_path / "ca.crt").read_bytes() == bundle.ca_pem


def test_second_start_reuses_the_secret(
    api_client: Any, core_v1: Any, namespace: str, mwc: str, tmp_path: Path
) -> None:
    first = asyncio.run(ensure_certificates(_settings(api_client, namespace, mwc, tmp_path / "a")))
    version = _secret(core_v1, namespace).metadata.resource_version
    second = asyncio.run(ensure_certificates(_settings(api_client, namespace, mwc, tmp_path / "b")))
    assert second == first
    assert _secret(core_v1, namespace).metadata.resource_version == version


def test_renewal_reissues_from_the_same_ca(
    api_client: Any, core_v1: Any, admission: k8s.AdmissionregistrationV1Api, namespace: str, mwc: str, tmp_path: Path
) -> None:
    short = asyncio.run(
        ensure_certificates(_settings(api_client, namespace, mwc, tmp_path, validity=2 * DAY, renew_before=DAY))
    )
    mwc_version = admission.read_mutating_webhook_configuration(mwc).metadata.resource_version
    # The default settings renew 30 days ahead; 2 days left is well within that.
    renewed = asyncio.run(ensure_certificates(_settings(api_client, namespace, mwc, tmp_path)))

    assert renewed.cert_pem != short.cert_pem
    assert renewed.ca_pem == short.ca_pem
    assert renewed.not_after - short.not_after > 300 * DAY
    assert _secret_data(_secret(core_v1, namespace))["tls.crt"] == renewed.cert_pem
    assert admission.read_mutating_webhook_configuration(mwc).metadata.resource_version == mwc_version
    assert (tmp_path / "tls.crt").read_bytes() == renewed.cert_pem


def test_concurrent_replicas_agree_on_one_secret(
    cluster: Any, core_v1: Any, admission: k8s.AdmissionregistrationV1Api, namespace: str, mwc: str, tmp_path: Path
) -> None:
    replicas = [_settings(cluster.api_client(), namespace, mwc, tmp_path / f"replica-{i}") for i in range(4)]

    async def start_all() -> list[certs.CertBundle]:
        return list(await asyncio.gather(*(ensure_certificates(s) for s in replicas)))

    bundles = asyncio.run(start_all())
    assert all(b == bundles[0] for b in bundles)
    assert _secret_data(_secret(core_v1, namespace))["tls.crt"] == bundles[0].cert_pem
    for replica in replicas:
        assert (replica.cert_dir / "tls.crt").read_bytes() == bundles[0].cert_pem
    assert _ca_bundles(admission, mwc) == [bundles[0].ca_pem] * 2

    # All want to renew a nearly expired certificate at once: one update wins, the others adopt it.
    short = asyncio.run(
        ensure_certificates(
            _settings(
                cluster.api_client(),
                namespace,
                mwc,
                tmp_path / "short",
                secret_name="frw-renew",
                validity=2 * DAY,
                renew_before=DAY,
            )
        )
    )
    renewing = [
        _settings(cluster.api_client(), namespace, mwc, tmp_path / f"renew-{i}", secret_name="frw-renew")
        for i in range(4)
    ]

    async def renew_all() -> list[certs.CertBundle]:
        return list(await asyncio.gather(*(ensure_certificates(s) for s in renewing)))

    renewed = asyncio.run(renew_all())
    assert all(b == renewed[0] for b in renewed)
    assert renewed[0].cert_pem != short.cert_pem and renewed[0].ca_pem == short.ca_pem
    stored = _secret_data(core_v1.read_namespaced_secret("frw-renew", namespace))
    assert stored["tls.crt"] == renewed[0].cert_pem


def test_ca_bundle_is_restored_when_it_drifts(
    api_client: Any, admission: k8s.AdmissionregistrationV1Api, namespace: str, mwc: str, tmp_path: Path
) -> None:
    bundle = asyncio.run(ensure_certificates(_settings(api_client, namespace, mwc, tmp_path)))
    stranger = certs.generate_ca()[0]
    admission.patch_mutating_webhook_configuration(
        mwc,
        [{"op": "replace", "path": "/webhooks/1/clientConfig/caBundle", "value": base64.b64encode(stranger).decode()}],
        _content_type="application/json-patch+json",
    )
    asyncio.run(ensure_certificates(_settings(api_client, namespace, mwc, tmp_path)))
    # Our CA is back on every entry; the other CA, still valid, stays trusted (the bundle is a union).
    assert _ca_bundles(admission, mwc) == [bundle.ca_pem + stranger] * 2


def _trusted_by_every_entry(admission: k8s.AdmissionregistrationV1Api, name: str, cert_file: Path) -> bool:
    return all(
        certs.ServedCertificate(cert_file=cert_file, trusted=bundle).problem() is None
        for bundle in _ca_bundles(admission, name)
    )


def test_deleted_secret_keeps_a_second_replica_trusted(
    api_client: Any, core_v1: Any, admission: k8s.AdmissionregistrationV1Api, namespace: str, mwc: str, tmp_path: Path
) -> None:
    """Replica b recreates a deleted Secret with a new CA while replica a still serves its certificate from the
    old CA: a stays trusted until its own loop adopts the new Secret, and then serves the new CA's certificate."""
    a = _settings(api_client, namespace, mwc, tmp_path / "a", check_interval=0.2, retry_interval=0.1)
    b = _settings(api_client, namespace, mwc, tmp_path / "b")

    async def scenario() -> None:
        old = await ensure_certificates(a)
        await ensure_certificates(b)
        await asyncio.to_thread(core_v1.delete_namespaced_secret, "frw-certs", namespace)

        new = await ensure_certificates(b)
        assert new.ca_pem != old.ca_pem
        assert (a.cert_dir / "tls.crt").read_bytes() == old.cert_pem  # a has not looked yet
        assert _ca_bundles(admission, mwc) == [new.ca_pem + old.ca_pem] * 2
        assert _trusted_by_every_entry(admission, mwc, a.cert_dir / "tls.crt")
        assert _trusted_by_every_entry(admission, mwc, b.cert_dir / "tls.crt")

        stop = asyncio.Event()
        loop = asyncio.create_task(rotate_forever(a, stop))
        try:
            await _eventually(
                lambda: (a.cert_dir / "tls.crt").read_bytes() == new.cert_pem, "replica a to adopt the new Secret"
            )
        finally:
            stop.set()
            await asyncio.wait_for(loop, timeout=10)
        assert _trusted_by_every_entry(admission, mwc, a.cert_dir / "tls.crt")
        assert _ca_bundles(admission, mwc) == [new.ca_pem + old.ca_pem] * 2

    asyncio.run(scenario())


def test_patch_refuses_to_clobber_a_bundle_changed_under_it(
    api_client: Any,
    admission: k8s.AdmissionregistrationV1Api,
    namespace: str,
    mwc: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another writer sets caBundle between our GET and PATCH: the real API server refuses our patch (its
    resourceVersion test fails), we re-read, and the result keeps both CAs."""
    theirs = certs.generate_ca()[0]
    patches: list[int] = []

    class RacingAdmission(k8s.AdmissionregistrationV1Api):  # type: ignore[misc]
        def patch_mutating_webhook_configuration(self, name: str, body: Any, **kw: Any) -> Any:
            patches.append(len(patches))
            if len(patches) == 1:
                admission.patch_mutating_webhook_configuration(
                    name,
                    [
                        {
                            "op": "add",
                            "path": "/webhooks/0/clientConfig/caBundle",
                            "value": base64.b64encode(theirs).decode(),
                        }
                    ],
                    _content_type="application/json-patch+json",
                )
            return super().patch_mutating_webhook_configuration(name, body, **kw)

    monkeypatch.setattr(selfmanaged, "_admission_api", lambda s: RacingAdmission(s.api_client))
    bundle = asyncio.run(ensure_certificates(_settings(api_client, namespace, mwc, tmp_path)))
    assert len(patches) == 2, "the first patch should have been refused"
    assert _ca_bundles(admission, mwc) == [bundle.ca_pem + theirs] * 2


def test_loop_patches_a_late_webhook_configuration_and_follows_other_replicas(
    api_client: Any, admission: k8s.AdmissionregistrationV1Api, namespace: str, tmp_path: Path
) -> None:
    late = f"frw-e2e-late-{secrets.token_hex(3)}"
    settings = _settings(api_client, namespace, late, tmp_path / "mine", check_interval=0.2, retry_interval=0.1)

    async def scenario() -> None:
        first = await ensure_certificates(settings)  # no configuration yet: not an error
        stop = asyncio.Event()
        loop = asyncio.create_task(rotate_forever(settings, stop))
        try:
            await asyncio.to_thread(
                admission.create_mutating_webhook_configuration,
                k8s.V1MutatingWebhookConfiguration.model_validate(_mwc_body(late, 1, namespace)),
            )
            await _eventually(lambda: _ca_bundles(admission, late) == [first.ca_pem], "caBundle on the late MWC")

            # Another replica renews (its settings say 400-day certificates are due 390 days ahead).
            other = _settings(
                api_client, namespace, late, tmp_path / "other", validity=400 * DAY, renew_before=390 * DAY
            )
            renewed = await ensure_certificates(other)
            assert renewed.cert_pem != first.cert_pem
            await _eventually(
                lambda: (settings.cert_dir / "tls.crt").read_bytes() == renewed.cert_pem,
                "this replica to pick up the renewed certificate",
            )
        finally:
            stop.set()
            await asyncio.wait_for(loop, timeout=10)
            await asyncio.to_thread(admission.delete_mutating_webhook_configuration, late)

    asyncio.run(scenario())


async def _eventually(check: Any, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(check):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def test_dev_webhook_registration_is_accepted_and_replaced(
    api_client: Any, admission: k8s.AdmissionregistrationV1Api
) -> None:
    name = f"frw-e2e-dev-{secrets.token_hex(3)}"
    # A prefix no pod of the other tests carries, so this registration never intercepts them.
    prefix = f"never-{secrets.token_hex(3)}.e2e.flyte.org/"
    ca = certs.generate_bundle(ip_addresses=["127.0.0.1"]).ca_pem
    try:
        devmode.register_dev_webhook(
            name=name,
            url="https://127.0.0.1:1/flyte-resources",
            ca_pem=ca,
            annotation_prefix=prefix,
            failure_policy="Ignore",
            api_client=api_client,
        )
        devmode.register_dev_webhook(
            name=name,
            url="https://127.0.0.1:2/flyte-resources",
            ca_pem=ca,
            annotation_prefix=prefix,
            failure_policy="Ignore",
            api_client=api_client,
        )
        (webhook,) = admission.read_mutating_webhook_configuration(name).webhooks or []
        assert webhook.client_config.url == "https://127.0.0.1:2/flyte-resources"
        assert base64.b64decode(webhook.client_config.ca_bundle or "") == ca
        assert webhook.reinvocation_policy == "IfNeeded" and webhook.timeout_seconds == 5
        (condition,) = webhook.match_conditions or []
        assert prefix in condition.expression
    finally:
        devmode.unregister_dev_webhook(name=name, api_client=api_client)
    with pytest.raises(ApiException) as gone:
        admission.read_mutating_webhook_configuration(name)
    assert gone.value.status == 404


# --- two real `run --cert-mode self-managed` processes, as a ServiceAccount with the chart's rights -------------


class Replica:
    """One `flyte-resources-webhook run --cert-mode self-managed` process on loopback ports."""

    def __init__(self, name: str, run_dir: Path, kubeconfig: Path, args: list[str]) -> None:
        self.name = name
        self.cert_dir = run_dir / name
        self.port, self.probe_port = free_port(), free_port()
        self.log = run_dir / f"{name}.log"
        argv = [
            sys.executable,
            "-m",
            "webhook.cli",
            "run",
            "--addr=127.0.0.1",
            f"--port={self.port}",
            "--probe-addr=127.0.0.1",
            f"--probe-port={self.probe_port}",
            f"--cert-dir={self.cert_dir}",
            "--log-format=plain",
            *args,
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("FRW_")}
        env.update(KUBECONFIG=str(kubeconfig), PYTHONUNBUFFERED="1")
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)

    def readyz(self) -> tuple[int, str]:
        if self.process.poll() is not None:
            pytest.fail(f"{self.name} exited ({self.process.returncode}):\n{self.log.read_text()[-3000:]}")
        return http_get(f"http://127.0.0.1:{self.probe_port}/readyz")

    def expiry_gauge(self) -> float:
        _, text = http_get(f"http://127.0.0.1:{self.probe_port}/metrics")
        line = next(x for x in text.splitlines() if x.startswith("flyte_resources_webhook_certificate_expiry"))
        return float(line.split()[-1])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def _service_account_kubeconfig(cluster: Any, namespace: str, account: str, path: Path) -> Path:
    """A kubeconfig with a TokenRequest token of the ServiceAccount: what the pod's mounted token is."""
    created = cluster.kubectl("create", "serviceaccount", account, "-n", namespace)
    assert created.returncode == 0, created.stderr
    token = cluster.kubectl("create", "token", account, "-n", namespace, "--duration=1h")
    assert token.returncode == 0, token.stderr
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    config["users"] = [{"name": u["name"], "user": {"token": token.stdout.strip()}} for u in config["users"]]
    path.write_text(yaml.safe_dump(config))
    return path


def _chart_like_rbac(namespace: str, account: str, mwc: str, mwc_verbs: list[str]) -> list[dict[str, Any]]:
    subject = [{"kind": "ServiceAccount", "name": account, "namespace": namespace}]
    name = f"{namespace}-frw"
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "frw", "namespace": namespace},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["secrets"],
                    "resourceNames": ["frw-certs"],
                    "verbs": ["get", "update"],
                },
                {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "frw", "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "frw"},
            "subjects": subject,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": name},
            "rules": [
                {
                    "apiGroups": ["admissionregistration.k8s.io"],
                    "resources": ["mutatingwebhookconfigurations"],
                    "resourceNames": [mwc],
                    "verbs": mwc_verbs,
                }
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": subject,
        },
    ]


def test_two_processes_stay_ready_across_a_deleted_secret_and_readyz_follows_trust(
    cluster: Any, core_v1: Any, admission: k8s.AdmissionregistrationV1Api, namespace: str, mwc: str, tmp_path: Path
) -> None:
    rbac = _chart_like_rbac(namespace, "frw", mwc, ["get", "patch"])
    for obj in rbac:
        cluster.apply(obj)
    kubeconfig = _service_account_kubeconfig(cluster, namespace, "frw", tmp_path / "sa.kubeconfig")
    account = f"--as=system:serviceaccount:{namespace}:frw"
    for verb, what in (("get", "secret/frw-certs"), ("patch", f"mutatingwebhookconfiguration/{mwc}")):
        wait_for(
            lambda verb=verb, what=what: (
                cluster.kubectl("auth", "can-i", verb, what, "-n", namespace, account).returncode == 0
            ),
            f"RBAC to allow {verb} {what}",
        )
    args = [
        "--cert-mode=self-managed",
        "--cert-secret=frw-certs",
        f"--webhook-config-name={mwc}",
        "--service-name=frw",
        f"--namespace={namespace}",
        "--cert-check-interval=1",
    ]
    replicas = [Replica(name, tmp_path, kubeconfig, args) for name in ("replica-a", "replica-b")]
    try:
        wait_for(lambda: all(r.readyz()[0] == 200 for r in replicas), "both replicas ready")
        first = _secret_data(_secret(core_v1, namespace))
        assert all(r.expiry_gauge() == certs.read_not_after(first["tls.crt"]).timestamp() for r in replicas)

        # The Secret is deleted: a replica recreates it with a new CA; no replica is ever unready or untrusted.
        core_v1.delete_namespaced_secret("frw-certs", namespace)
        deadline = time.monotonic() + 30
        while True:
            for r in replicas:
                status, text = r.readyz()
                assert status == 200, f"{r.name} unready while the Secret was recreated: {text}"
                assert _trusted_by_every_entry(admission, mwc, r.cert_dir / "tls.crt"), f"{r.name} untrusted"
            try:
                now = _secret_data(_secret(core_v1, namespace))
            except ApiException:
                now = {}
            if now and all((r.cert_dir / "tls.crt").read_bytes() == now["tls.crt"] for r in replicas):
                break
            if time.monotonic() > deadline:
                pytest.fail("the replicas did not converge on a recreated Secret")
            time.sleep(0.2)
        assert now["ca.crt"] != first["ca.crt"]
        assert _ca_bundles(admission, mwc) == [now["ca.crt"] + first["ca.crt"]] * 2

        # Without the right to repair it, a caBundle that lost our CA makes both replicas unready; restored, ready.
        cluster.apply(_chart_like_rbac(namespace, "frw", mwc, ["get"])[2])
        stranger = base64.b64encode(certs.generate_ca()[0]).decode()
        ours = base64.b64encode(now["ca.crt"]).decode()
        for value in (stranger, ours):
            admission.patch_mutating_webhook_configuration(
                mwc,
                [{"op": "add", "path": f"/webhooks/{i}/clientConfig/caBundle", "value": value} for i in range(2)],
                _content_type="application/json-patch+json",
            )
            if value == stranger:
                wait_for(lambda: all(r.readyz()[0] == 503 for r in replicas), "both replicas unready")
                assert all("not signed by any CA" in r.readyz()[1] for r in replicas)
            else:
                wait_for(lambda: all(r.readyz()[0] == 200 for r in replicas), "both replicas ready again")
    finally:
        for r in replicas:
            r.stop()
        cluster.kubectl(
            "delete",
            "-f",
            "-",
            "--ignore-not-found",
            "--wait=false",
            input=json.dumps({"apiVersion": "v1", "kind": "List", "items": rbac}),
        )


def wait_for(check: Any, what: str, timeout: float = 30.0) -> None:
    """Poll `check` every 0.2 s until it is true; fail the test naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)
