"""Self-managed certificates against an in-memory fake of the two API groups (no apiserver needed).

The same behaviour runs against a real kube-apiserver in tests/e2e/test_selfmanaged.py; here the fake lets us
force the races (409s) and failures deterministically.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import functools
import logging
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from webhook.operator import certs, devmode, registration, selfmanaged
from webhook.operator.kubeapi import KubeApiError
from webhook.operator.selfmanaged import (
    SelfManagedSettings,
    StoredCerts,
    ensure_certificates,
    plan_certificates,
    rotate_forever,
    service_dns_names,
)

NAMES = service_dns_names("frw", "ns")


def run_async(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test on a fresh event loop (the project has no asyncio pytest plugin)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(fn(*args, **kwargs))

    return wrapper


DAY = timedelta(days=1)


def _plan(stored: StoredCerts | None, now: datetime, **kw: Any) -> tuple[StoredCerts, str | None]:
    args: dict[str, Any] = {
        "dns_names": NAMES,
        "now": now,
        "renew_before": 30 * DAY,
        "validity": 365 * DAY,
        "ca_validity": 3650 * DAY,
    }
    args.update(kw)
    return plan_certificates(stored, **args)


@pytest.fixture(scope="module")
def fresh() -> StoredCerts:
    stored, reason = _plan(None, datetime.now(UTC))
    assert reason == "it has no certificates yet"
    return stored


# --- the pure decision ---------------------------------------------------------------------------


def test_service_dns_names() -> None:
    assert NAMES == ("frw", "frw.ns", "frw.ns.svc", "frw.ns.svc.cluster.local")


def test_new_material_is_consistent(fresh: StoredCerts) -> None:
    assert certs.signed_by(fresh.tls_cert, fresh.ca_cert)
    assert certs.key_matches_cert(fresh.ca_cert, fresh.ca_key)
    assert certs.key_matches_cert(fresh.tls_cert, fresh.tls_key)
    assert certs.cert_sans(fresh.tls_cert)[0] == set(NAMES)
    assert fresh.previous_ca is None


def test_fresh_material_is_kept(fresh: StoredCerts) -> None:
    kept, reason = _plan(fresh, datetime.now(UTC))
    assert reason is None and kept is fresh


def test_leaf_near_expiry_is_reissued_from_the_same_ca(fresh: StoredCerts) -> None:
    later = certs.read_not_after(fresh.tls_cert) - 10 * DAY
    renewed, reason = _plan(fresh, later)
    assert reason is not None and "re-issued from the same CA" in reason and "expires at" in reason
    assert renewed.ca_cert == fresh.ca_cert and renewed.ca_key == fresh.ca_key
    assert renewed.tls_cert != fresh.tls_cert
    assert certs.signed_by(renewed.tls_cert, fresh.ca_cert)
    assert certs.read_not_after(renewed.tls_cert) > later + 300 * DAY


def test_ca_near_expiry_gets_a_new_ca_and_keeps_the_old_one_trusted(fresh: StoredCerts) -> None:
    later = certs.read_not_after(fresh.ca_cert) - 10 * DAY
    renewed, reason = _plan(fresh, later)
    assert reason is not None and "new CA issued" in reason
    assert renewed.ca_cert != fresh.ca_cert
    assert renewed.previous_ca == fresh.ca_cert
    assert certs.signed_by(renewed.tls_cert, renewed.ca_cert)
    # The new CA first: it signs what is served from now on.
    assert certs.split_pem_certs(renewed.trust_bundle(later)) == [renewed.ca_cert, fresh.ca_cert]
    # Once the old CA has expired it leaves the bundle, and the next renewal drops it from the Secret.
    after_old_expired = certs.read_not_after(fresh.ca_cert) + DAY
    assert renewed.trust_bundle(after_old_expired) == renewed.ca_cert
    renewed_again, _ = _plan(renewed, certs.read_not_after(renewed.tls_cert) - DAY)
    assert renewed_again.previous_ca is None


def test_wrong_sans_are_reissued(fresh: StoredCerts) -> None:
    renewed, reason = _plan(fresh, datetime.now(UTC), dns_names=service_dns_names("other", "ns"))
    assert reason is not None and "names" in reason
    assert renewed.ca_cert == fresh.ca_cert
    assert certs.cert_sans(renewed.tls_cert)[0] == set(service_dns_names("other", "ns"))


def test_mismatched_key_is_reissued(fresh: StoredCerts) -> None:
    other = certs.generate_bundle(dns_names=NAMES)
    broken = StoredCerts(fresh.ca_cert, fresh.ca_key, fresh.tls_cert, other.key_pem)
    renewed, reason = _plan(broken, datetime.now(UTC))
    assert reason is not None and "serving key does not match" in reason
    assert renewed.ca_cert == fresh.ca_cert


def test_not_yet_valid_leaf_is_reissued(fresh: StoredCerts) -> None:
    future, _ = _plan(fresh, datetime.now(UTC) + 100 * DAY, renew_before=400 * DAY)
    renewed, reason = _plan(future, datetime.now(UTC))
    assert reason is not None and "not valid before" in reason
    assert certs.read_not_before(renewed.tls_cert) < datetime.now(UTC)


def test_leaf_from_a_foreign_ca_is_reissued(fresh: StoredCerts) -> None:
    other = certs.generate_bundle(dns_names=NAMES)
    broken = StoredCerts(fresh.ca_cert, fresh.ca_key, other.cert_pem, other.key_pem)
    _, reason = _plan(broken, datetime.now(UTC))
    assert reason is not None and "not issued by its CA" in reason


def test_garbage_ca_gets_a_new_ca(fresh: StoredCerts) -> None:
    broken = StoredCerts(b"junk", fresh.ca_key, fresh.tls_cert, fresh.tls_key)
    renewed, reason = _plan(broken, datetime.now(UTC))
    assert reason is not None and "unreadable" in reason
    assert renewed.previous_ca is None
    assert certs.signed_by(renewed.tls_cert, renewed.ca_cert)


def test_incomplete_secret_data_counts_as_missing(fresh: StoredCerts) -> None:
    data = fresh.to_data()
    assert StoredCerts.from_data(data) == fresh
    del data["ca.key"]
    assert StoredCerts.from_data(data) is None
    assert StoredCerts.from_data({}) is None


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"renew_before": 400 * DAY}, "must be shorter than the certificate validity"),
        ({"validity": 2 * DAY, "renew_before": 2 * DAY}, "must be shorter than the certificate validity"),
        ({"renew_before": -DAY}, "must be positive"),
        ({"check_interval": 0}, "intervals must be positive"),
        ({"check_interval": float("nan")}, "intervals must be positive"),
        ({"retry_interval": float("inf")}, "intervals must be positive"),
        ({"secret_name": ""}, "need a secret name"),
    ],
)
def test_settings_are_validated(tmp_path: Path, kw: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {
        "secret_name": "s",
        "namespace": "ns",
        "webhook_config_name": "mwc",
        "service_name": "frw",
        "cert_dir": tmp_path,
    }
    args.update(kw)
    with pytest.raises(ValueError, match=message):
        SelfManagedSettings(**args)


# --- the API interaction, against a fake ---------------------------------------------------------


def _api_error(status: int, reason: str) -> ApiException:
    return ApiException(status=status, reason=reason)


class FakeCluster:
    """Secrets and MutatingWebhookConfigurations with resourceVersions, 409s and JSON patch test ops."""

    def __init__(self) -> None:
        self.secrets: dict[tuple[str, str], dict[str, Any]] = {}
        self.mwcs: dict[str, dict[str, Any]] = {}
        self.rv = 0
        self.forbid: set[str] = set()
        self.calls: list[str] = []
        # Hook run right before a write is applied, to simulate another replica winning a race.
        self.before_write: dict[str, list[Any]] = {}

    def _next_rv(self) -> str:
        self.rv += 1
        return str(self.rv)

    def _check(self, verb: str) -> None:
        self.calls.append(verb)
        if verb in self.forbid:
            raise _api_error(403, "Forbidden")

    def _race(self, verb: str) -> None:
        hooks = self.before_write.get(verb, [])
        while hooks:
            hooks.pop(0)(self)

    # CoreV1Api
    def read_namespaced_secret(self, name: str, namespace: str, **_: Any) -> k8s.V1Secret:
        self._check("get secret")
        try:
            return k8s.V1Secret.model_validate(copy.deepcopy(self.secrets[namespace, name]))
        except KeyError:
            raise _api_error(404, "Not Found") from None

    def create_namespaced_secret(self, namespace: str, body: k8s.V1Secret, **_: Any) -> None:
        self._check("create secret")
        self._race("create secret")
        raw = k8s.ApiClient().sanitize_for_serialization(body)
        key = (namespace, raw["metadata"]["name"])
        if key in self.secrets:
            raise _api_error(409, "AlreadyExists")
        raw["metadata"]["resourceVersion"] = self._next_rv()
        self.secrets[key] = raw

    def replace_namespaced_secret(self, name: str, namespace: str, body: k8s.V1Secret, **_: Any) -> None:
        self._check("update secret")
        self._race("update secret")
        raw = k8s.ApiClient().sanitize_for_serialization(body)
        current = self.secrets[namespace, name]
        if raw["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            raise _api_error(409, "Conflict")
        raw["metadata"]["resourceVersion"] = self._next_rv()
        self.secrets[namespace, name] = raw

    # AdmissionregistrationV1Api
    def read_mutating_webhook_configuration(self, name: str, **_: Any) -> Any:
        self._check("get mwc")
        try:
            return k8s.V1MutatingWebhookConfiguration.model_validate(copy.deepcopy(self.mwcs[name]))
        except KeyError:
            raise _api_error(404, "Not Found") from None

    def patch_mutating_webhook_configuration(self, name: str, ops: list[dict[str, Any]], **kw: Any) -> None:
        self._check("patch mwc")
        assert kw["_content_type"] == "application/json-patch+json"
        self._race("patch mwc")
        doc = copy.deepcopy(self.mwcs[name])
        for op in ops:
            *parents, leaf = op["path"].strip("/").split("/")
            node: Any = doc
            for part in parents:
                node = node[int(part)] if isinstance(node, list) else node[part]
            if op["op"] == "test" and node[leaf] != op["value"]:
                raise _api_error(422, "Unprocessable Entity")
            if op["op"] == "add":
                node[leaf] = op["value"]
        doc["metadata"]["resourceVersion"] = self._next_rv()
        self.mwcs[name] = doc

    def add_mwc(self, name: str, entries: list[str]) -> None:
        self.mwcs[name] = {
            "metadata": {"name": name, "resourceVersion": self._next_rv()},
            "webhooks": [
                {
                    "name": entry,
                    "clientConfig": {"service": {"name": "frw", "namespace": "ns", "path": "/flyte-resources"}},
                    "sideEffects": "None",
                    "admissionReviewVersions": ["v1"],
                }
                for entry in entries
            ],
        }

    def ca_bundles(self, name: str) -> list[bytes]:
        return [base64.b64decode(w["clientConfig"].get("caBundle", "")) for w in self.mwcs[name]["webhooks"]]

    def secret_data(self, name: str = "frw-certs") -> dict[str, bytes]:
        data = self.secrets["ns", name]["data"]
        return {k: base64.b64decode(v) for k, v in data.items()}


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> FakeCluster:
    fake = FakeCluster()
    monkeypatch.setattr(selfmanaged, "_core_api", lambda s: fake)
    monkeypatch.setattr(selfmanaged, "_admission_api", lambda s: fake)
    return fake


def _settings(cert_dir: Path, **kw: Any) -> SelfManagedSettings:
    args: dict[str, Any] = {
        "secret_name": "frw-certs",
        "namespace": "ns",
        "webhook_config_name": "frw",
        "service_name": "frw",
        "cert_dir": cert_dir,
    }
    args.update(kw)
    return SelfManagedSettings(**args)


@run_async
async def test_first_start_creates_secret_patches_webhooks_writes_files(cluster: FakeCluster, tmp_path: Path) -> None:
    cluster.add_mwc("frw", ["a.resources.flyte.org", "b.resources.flyte.org"])
    bundle = await ensure_certificates(_settings(tmp_path))
    data = cluster.secret_data()
    assert set(data) == {"ca.crt", "ca.key", "tls.crt", "tls.key"}
    assert cluster.secrets["ns", "frw-certs"]["type"] == "kubernetes.io/tls"
    assert bundle.cert_pem == data["tls.crt"] and bundle.ca_pem == data["ca.crt"]
    assert cluster.ca_bundles("frw") == [data["ca.crt"], data["ca.crt"]]
    assert (tmp_path / "tls.crt").read_bytes() == data["tls.crt"]
    assert (tmp_path / "tls.key").read_bytes() == data["tls.key"]
    assert (tmp_path / "ca.crt").read_bytes() == data["ca.crt"]


@run_async
async def test_second_start_changes_nothing(cluster: FakeCluster, tmp_path: Path) -> None:
    cluster.add_mwc("frw", ["a.resources.flyte.org"])
    first = await ensure_certificates(_settings(tmp_path / "one"))
    rv = cluster.secrets["ns", "frw-certs"]["metadata"]["resourceVersion"]
    cluster.calls.clear()
    second = await ensure_certificates(_settings(tmp_path / "two"))
    assert second == first
    assert cluster.calls == ["get secret", "get mwc"]
    assert cluster.secrets["ns", "frw-certs"]["metadata"]["resourceVersion"] == rv


@run_async
async def test_losing_the_create_race_adopts_the_winner(cluster: FakeCluster, tmp_path: Path) -> None:
    cluster.add_mwc("frw", ["a.resources.flyte.org"])
    winner: dict[str, Any] = {}

    def other_replica_creates(fake: FakeCluster) -> None:
        stored, _ = _plan(None, datetime.now(UTC))
        winner.update(stored.to_data())
        fake.secrets["ns", "frw-certs"] = {
            "metadata": {"name": "frw-certs", "resourceVersion": fake._next_rv()},
            "data": {k: base64.b64encode(v).decode() for k, v in stored.to_data().items()},
        }

    cluster.before_write["create secret"] = [other_replica_creates]
    bundle = await ensure_certificates(_settings(tmp_path))
    assert bundle.cert_pem == winner["tls.crt"]
    assert cluster.calls.count("create secret") == 1
    assert (tmp_path / "tls.crt").read_bytes() == winner["tls.crt"]


@run_async
async def test_losing_the_update_race_adopts_the_winner(cluster: FakeCluster, tmp_path: Path) -> None:
    cluster.add_mwc("frw", ["a.resources.flyte.org"])
    # A certificate about to expire: both replicas want to renew it.
    await ensure_certificates(_settings(tmp_path / "a", validity=3 * DAY, renew_before=DAY))
    winner: dict[str, bytes] = {}

    def other_replica_renews(fake: FakeCluster) -> None:
        current = StoredCerts.from_data(fake.secret_data())
        renewed, reason = _plan(current, datetime.now(UTC))
        assert reason is not None
        winner.update(renewed.to_data())
        fake.secrets["ns", "frw-certs"]["data"] = {
            k: base64.b64encode(v).decode() for k, v in renewed.to_data().items()
        }
        fake.secrets["ns", "frw-certs"]["metadata"]["resourceVersion"] = fake._next_rv()

    cluster.before_write["update secret"] = [other_replica_renews]
    bundle = await ensure_certificates(_settings(tmp_path / "b"))
    assert cluster.calls.count("update secret") == 1
    assert bundle.cert_pem == winner["tls.crt"]


@run_async
async def test_renewal_keeps_the_ca_and_the_ca_bundle(cluster: FakeCluster, tmp_path: Path) -> None:
    cluster.add_mwc("frw", ["a.resources.flyte.org"])
    short = await ensure_certificates(_settings(tmp_path, validity=3 * DAY, renew_before=DAY))
    cluster.calls.clear()
    renewed = await ensure_certificates(_settings(tmp_path))  # renew_before 30 days > 3 days left
    assert renewed.cert_pem != short.cert_pem
    assert renewed.ca_pem == short.ca_pem
    assert renewed.not_after - short.not_after > 300 * DAY
    assert "patch mwc" not in cluster.calls  # same CA: nothing to change in the webhook configuration
    assert (tmp_path / "tls.crt").read_bytes() == renewed.cert_pem


@run_async
async def test_missing_webhook_configuration_is_not_fatal_at_start(
    cluster: FakeCluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        bundle = await ensure_certificates(_settings(tmp_path))
    assert (tmp_path / "tls.crt").read_bytes() == bundle.cert_pem
    assert "MutatingWebhookConfiguration frw not found" in caplog.text


@run_async
async def test_forbidden_secret_is_a_clear_start_error(cluster: FakeCluster, tmp_path: Path) -> None:
    cluster.forbid.add("create secret")
    with pytest.raises(KubeApiError, match=r"not allowed to create Secret ns/frw-certs: .*\"create\""):
        await ensure_certificates(_settings(tmp_path))
    assert not (tmp_path / "tls.crt").exists()


@run_async
async def test_forbidden_webhook_patch_is_a_clear_start_error(cluster: FakeCluster, tmp_path: Path) -> None:
    cluster.add_mwc("frw", ["a.resources.flyte.org"])
    cluster.forbid.add("patch mwc")
    with pytest.raises(KubeApiError, match="not allowed to patch MutatingWebhookConfiguration frw"):
        await ensure_certificates(_settings(tmp_path))


@run_async
async def test_unreachable_api_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    class Down:
        def read_namespaced_secret(self, *a: Any, **k: Any) -> None:
            raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(selfmanaged, "_core_api", lambda s: Down())
    with pytest.raises(KubeApiError, match="API server is unreachable"):
        await ensure_certificates(_settings(tmp_path))


@run_async
async def test_webhook_list_changed_between_get_and_patch(cluster: FakeCluster, tmp_path: Path) -> None:
    cluster.add_mwc("frw", ["a.resources.flyte.org", "b.resources.flyte.org"])

    def reorder(fake: FakeCluster) -> None:
        fake.mwcs["frw"]["webhooks"].reverse()
        fake.mwcs["frw"]["metadata"]["resourceVersion"] = fake._next_rv()

    cluster.before_write["patch mwc"] = [reorder]
    bundle = await ensure_certificates(_settings(tmp_path))
    assert cluster.calls.count("patch mwc") == 2
    assert cluster.ca_bundles("frw") == [bundle.ca_pem, bundle.ca_pem]


@run_async
async def test_ca_rotation_publishes_both_cas_before_serving(cluster: FakeCluster, tmp_path: Path) -> None:
    cluster.add_mwc("frw", ["a.resources.flyte.org"])
    settings = _settings(tmp_path, ca_validity=20 * DAY, validity=10 * DAY, renew_before=5 * DAY)
    old = await ensure_certificates(settings)
    # The CA now has less than renew_before left.
    renewed = await ensure_certificates(_settings(tmp_path, ca_validity=3650 * DAY, renew_before=25 * DAY))
    new_ca, old_ca = certs.split_pem_certs(renewed.ca_pem)
    assert old_ca == old.ca_pem and new_ca != old_ca
    assert cluster.ca_bundles("frw") == [renewed.ca_pem]
    assert cluster.secret_data()["ca.previous.crt"] == old.ca_pem
    assert (tmp_path / "ca.crt").read_bytes() == renewed.ca_pem


@run_async
async def test_loop_keeps_old_files_when_a_new_ca_cannot_be_published(cluster: FakeCluster, tmp_path: Path) -> None:
    cluster.add_mwc("frw", ["a.resources.flyte.org"])
    await ensure_certificates(_settings(tmp_path, ca_validity=20 * DAY, validity=10 * DAY, renew_before=5 * DAY))
    before = (tmp_path / "tls.crt").read_bytes()
    cluster.forbid.add("patch mwc")
    with pytest.raises(KubeApiError):
        await asyncio.to_thread(selfmanaged._sync_once, _settings(tmp_path, renew_before=25 * DAY), at_start=False)
    assert (tmp_path / "tls.crt").read_bytes() == before


@run_async
async def test_rotate_forever_picks_up_another_replicas_renewal(cluster: FakeCluster, tmp_path: Path) -> None:
    cluster.add_mwc("frw", ["a.resources.flyte.org"])
    settings = _settings(tmp_path / "mine", check_interval=0.05, retry_interval=0.05)
    first = await ensure_certificates(settings)
    stop = asyncio.Event()
    loop = asyncio.create_task(rotate_forever(settings, stop))
    try:
        # Another replica re-issues the leaf (same CA) and writes the Secret.
        current = StoredCerts.from_data(cluster.secret_data())
        assert current is not None
        renewed, reason = _plan(current, datetime.now(UTC), renew_before=400 * DAY)
        assert reason is not None
        cluster.secrets["ns", "frw-certs"]["data"] = {
            k: base64.b64encode(v).decode() for k, v in renewed.to_data().items()
        }
        for _ in range(100):
            if (tmp_path / "mine" / "tls.crt").read_bytes() == renewed.tls_cert:
                break
            await asyncio.sleep(0.02)
        assert (tmp_path / "mine" / "tls.crt").read_bytes() == renewed.tls_cert != first.cert_pem
    finally:
        stop.set()
        await asyncio.wait_for(loop, timeout=2)


@run_async
async def test_rotate_forever_survives_failures_and_stops_promptly(
    cluster: FakeCluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = _settings(tmp_path, check_interval=3600, retry_interval=0.01)
    await ensure_certificates(settings)
    cluster.forbid.add("get secret")
    stop = asyncio.Event()
    with caplog.at_level(logging.ERROR):
        loop = asyncio.create_task(rotate_forever(settings, stop))
        await asyncio.sleep(0.2)
        stop.set()
        await asyncio.wait_for(loop, timeout=2)
    assert "Certificate check failed (attempt 1): not allowed to read Secret ns/frw-certs" in caplog.text
    assert "Traceback" not in caplog.text


@run_async
async def test_deleted_secret_new_ca_keeps_the_old_ca_trusted(cluster: FakeCluster, tmp_path: Path) -> None:
    """Replica b recreates a deleted Secret with a new CA; replica a still serves the old CA's certificate."""
    cluster.add_mwc("frw", ["a.resources.flyte.org", "b.resources.flyte.org"])
    a = _settings(tmp_path / "a", served=certs.ServedCertificate(tmp_path / "a" / "tls.crt"))
    b = _settings(tmp_path / "b")
    old = await ensure_certificates(a)
    await ensure_certificates(b)
    del cluster.secrets["ns", "frw-certs"]

    new = await ensure_certificates(b)
    assert new.ca_pem != old.ca_pem
    union = new.ca_pem + old.ca_pem  # the Secret's CA first, the leftover after it
    assert cluster.ca_bundles("frw") == [union, union]
    assert (tmp_path / "a" / "tls.crt").read_bytes() == old.cert_pem
    a.served.trusted = cluster.ca_bundles("frw")[0]  # type: ignore[union-attr]
    assert a.served.problem() is None  # type: ignore[union-attr]

    # a adopts the new Secret; the bundle stays the union (nothing is narrowed), and a records it.
    adopted = await ensure_certificates(a)
    assert adopted == new
    assert cluster.ca_bundles("frw") == [union, union]
    assert a.served.trusted == union  # type: ignore[union-attr]

    # Once no replica serves the old CA, an administrator may drop it for good (the chart README's procedure).
    for hook in cluster.mwcs["frw"]["webhooks"]:
        hook["clientConfig"]["caBundle"] = base64.b64encode(new.ca_pem).decode()
    await ensure_certificates(a)
    await ensure_certificates(b)
    assert cluster.ca_bundles("frw") == [new.ca_pem, new.ca_pem]


@run_async
async def test_expired_and_foreign_garbage_leave_the_bundle(cluster: FakeCluster, tmp_path: Path) -> None:
    cluster.add_mwc("frw", ["a.resources.flyte.org", "b.resources.flyte.org"])
    expired = certs.generate_ca(now=datetime.now(UTC) - 10 * DAY, validity=DAY)[0]
    cluster.mwcs["frw"]["webhooks"][0]["clientConfig"]["caBundle"] = base64.b64encode(expired).decode()
    cluster.mwcs["frw"]["webhooks"][1]["clientConfig"]["caBundle"] = base64.b64encode(b"junk").decode()
    bundle = await ensure_certificates(_settings(tmp_path))
    assert cluster.ca_bundles("frw") == [bundle.ca_pem, bundle.ca_pem]


@run_async
async def test_bundle_is_capped(cluster: FakeCluster, tmp_path: Path) -> None:
    cluster.add_mwc("frw", ["a.resources.flyte.org"])
    leftovers = b"".join(certs.generate_ca()[0] for _ in range(selfmanaged._MAX_TRUSTED_CAS + 2))
    cluster.mwcs["frw"]["webhooks"][0]["clientConfig"]["caBundle"] = base64.b64encode(leftovers).decode()
    bundle = await ensure_certificates(_settings(tmp_path))
    (kept,) = cluster.ca_bundles("frw")
    assert certs.split_pem_certs(kept)[0] == bundle.ca_pem
    assert len(certs.split_pem_certs(kept)) == selfmanaged._MAX_TRUSTED_CAS


@run_async
async def test_patch_never_clobbers_a_bundle_changed_under_it(cluster: FakeCluster, tmp_path: Path) -> None:
    cluster.add_mwc("frw", ["a.resources.flyte.org"])
    theirs = certs.generate_ca()[0]

    def other_replica_writes_its_bundle(fake: FakeCluster) -> None:
        fake.mwcs["frw"]["webhooks"][0]["clientConfig"]["caBundle"] = base64.b64encode(theirs).decode()
        fake.mwcs["frw"]["metadata"]["resourceVersion"] = fake._next_rv()

    cluster.before_write["patch mwc"] = [other_replica_writes_its_bundle]
    bundle = await ensure_certificates(_settings(tmp_path))
    assert cluster.calls.count("patch mwc") == 2  # the first was refused by its resourceVersion test
    assert cluster.ca_bundles("frw") == [bundle.ca_pem + theirs]


@run_async
async def test_missing_configuration_means_no_known_bundle(cluster: FakeCluster, tmp_path: Path) -> None:
    served = certs.ServedCertificate(tmp_path / "tls.crt", trusted=b"stale")
    await ensure_certificates(_settings(tmp_path, served=served))
    assert served.trusted is None and served.problem() is None


@run_async
async def test_readiness_sees_a_lost_ca_the_replica_cannot_restore(cluster: FakeCluster, tmp_path: Path) -> None:
    """Someone replaced caBundle and our patch is forbidden: the served certificate is reported untrusted."""
    cluster.add_mwc("frw", ["a.resources.flyte.org", "b.resources.flyte.org"])
    served = certs.ServedCertificate(tmp_path / "tls.crt")
    settings = _settings(tmp_path, served=served)
    bundle = await ensure_certificates(settings)
    assert served.trusted == bundle.ca_pem and served.problem() is None

    stranger = certs.generate_ca()[0]
    # One entry still trusts us, the other does not: a call may go to either.
    cluster.mwcs["frw"]["webhooks"][1]["clientConfig"]["caBundle"] = base64.b64encode(stranger).decode()
    cluster.forbid.add("patch mwc")
    outcome = await asyncio.to_thread(selfmanaged._sync_once, settings, at_start=False)
    assert outcome.webhook is selfmanaged._WebhookState.FAILED
    assert served.trusted == b""
    assert "not signed by any CA in the webhook's caBundle" in (served.problem() or "")

    cluster.forbid.clear()
    await asyncio.to_thread(selfmanaged._sync_once, settings, at_start=False)
    assert served.problem() is None and served.trusted == bundle.ca_pem + stranger


def test_default_check_interval_is_short(tmp_path: Path) -> None:
    assert _settings(tmp_path).check_interval == selfmanaged.DEFAULT_CHECK_INTERVAL <= 60


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "soon"])
def test_cert_check_interval_flag_refuses_what_is_no_interval(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    from webhook.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--cert-check-interval", value])
    assert "not a positive number of seconds" in capsys.readouterr().err
    assert build_parser().parse_args(["run", "--cert-check-interval", "2.5"]).cert_check_interval == 2.5


# --- dev mode ------------------------------------------------------------------------------------


def test_dev_webhook_configuration_shape() -> None:
    body = devmode.build_dev_webhook_configuration(
        name="frw-dev", url="https://127.0.0.1:9443/flyte-resources", ca_pem=b"CA", annotation_prefix="x.io/"
    )
    (webhook,) = body["webhooks"]
    assert webhook["clientConfig"] == {"url": "https://127.0.0.1:9443/flyte-resources", "caBundle": "Q0E="}
    # The chart's rules (`make generate` renders them from the same module): CREATE of pods, UPDATE of pods/resize.
    assert webhook["rules"] == registration.pod_rules()
    assert [(r["operations"], r["resources"]) for r in webhook["rules"]] == [
        (["CREATE"], ["pods"]),
        (["UPDATE"], ["pods/resize"]),
    ]
    assert webhook["sideEffects"] == "None" and webhook["admissionReviewVersions"] == ["v1"]
    assert webhook["timeoutSeconds"] == 5 and webhook["reinvocationPolicy"] == "IfNeeded"
    assert webhook["failurePolicy"] == "Fail"
    assert webhook["namespaceSelector"]["matchExpressions"][0]["values"] == ["kube-system"]
    assert webhook["matchConditions"][0]["expression"] == (
        "has(object.metadata.annotations) && object.metadata.annotations.exists(k, k.startsWith('x.io/'))"
    )
    # The kubernetes models accept it as is.
    k8s.V1MutatingWebhookConfiguration.model_validate(body)


def test_dev_webhook_cel_quotes_are_escaped() -> None:
    assert registration.match_condition_expression("a'b\\").endswith("k.startsWith('a\\'b\\\\'))")


def test_dev_webhook_rejects_bad_arguments() -> None:
    with pytest.raises(KubeApiError, match="must be https"):
        devmode.register_dev_webhook(name="x", url="http://x", ca_pem=b"", api_client=k8s.ApiClient())
    with pytest.raises(KubeApiError, match="Fail or Ignore"):
        devmode.register_dev_webhook(
            name="x", url="https://x", ca_pem=b"", failure_policy="Maybe", api_client=k8s.ApiClient()
        )


@run_async
async def test_the_secret_is_owned_by_the_webhook_configuration_so_uninstall_removes_it(
    cluster: FakeCluster, tmp_path: Path
) -> None:
    """An ownerReference to the MutatingWebhookConfiguration: deleting it (`helm uninstall`) lets the garbage
    collector delete the Secret, which a reinstall would otherwise silently reuse."""
    cluster.add_mwc("frw", ["a.resources.flyte.org"])
    cluster.mwcs["frw"]["metadata"]["uid"] = "uid-1"
    settings = _settings(tmp_path)
    await ensure_certificates(settings)  # creates the Secret, then learns the configuration's uid
    await asyncio.to_thread(selfmanaged._sync_once, settings, at_start=False)

    def owners() -> list[dict[str, Any]]:
        return list(cluster.secrets["ns", "frw-certs"]["metadata"].get("ownerReferences") or [])

    wanted = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration", "name": "frw"}
    assert owners() == [{**wanted, "uid": "uid-1"}]
    data = cluster.secret_data()
    cluster.calls.clear()
    await asyncio.to_thread(selfmanaged._sync_once, settings, at_start=False)
    assert "update secret" not in cluster.calls  # adopted once, then left alone

    # The configuration deleted and created again (a new uid): the reference follows, the certificates stay.
    cluster.mwcs["frw"]["metadata"]["uid"] = "uid-2"
    await asyncio.to_thread(selfmanaged._sync_once, settings, at_start=False)
    await asyncio.to_thread(selfmanaged._sync_once, settings, at_start=False)
    assert owners() == [{**wanted, "uid": "uid-2"}]
    assert cluster.secret_data() == data
