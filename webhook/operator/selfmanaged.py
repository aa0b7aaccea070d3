"""Self-managed certificates for in-cluster installs without cert-manager.

The replicas share one Secret holding a CA (cert + key) and a serving certificate signed by it. The Secret is
the only coordination point: whoever finds it missing or due for renewal writes it, using create (409 when
another replica won) or update with the read resourceVersion (409 when another replica wrote in between); the
loser re-reads and adopts the winner's material. Each replica then

1. makes the MutatingWebhookConfiguration trust the Secret's CA(s) (`caBundle` on every webhook entry), and
2. only then writes the files kopf's WebhookServer serves, so a replica never serves a certificate the
   apiserver does not trust yet.

`caBundle` is never narrowed to one CA: it becomes the union of every still-valid CA of the Secret, of this
replica's certificate files and of the bundle already in the configuration. A replica that recreates a deleted
(or unreadable) Secret with a new CA therefore leaves the old CA trusted, and replicas still serving a
certificate from it keep working until they adopt the new Secret at their next check. The patch carries the
resourceVersion it was computed from (a JSON Patch `test` op), so a bundle another replica changed meanwhile
is re-read and merged, never overwritten. A CA leaves `caBundle` when it expires, or when the bundle would
exceed `_MAX_TRUSTED_CAS` (the oldest leftovers go first); an administrator may also remove one by hand once no
replica serves a certificate from it (nothing re-adds it then).

Rotation keeps the CA: only the serving certificate is re-issued, so `caBundle` stays put. When the CA itself
nears expiry a new CA is made and the old one stays in `caBundle` (Secret key `ca.previous.crt`) until it
expires, which covers replicas still serving a certificate from the old CA.

A webhook certificate that silently expires blocks every pod it is called for; the loop below renews
`renew_before` ahead and keeps retrying with backoff when the API is unavailable.
"""

from __future__ import annotations

import asyncio
import base64
import enum
import logging
import math
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import urllib3.exceptions
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from webhook.operator import certs
from webhook.operator.certs import CertBundle, CertificateError
from webhook.operator.kubeapi import KubeApiError, api_error, kube_api_client

__all__ = [
    "DEFAULT_CHECK_INTERVAL",
    "PREVIOUS_CA_KEY",
    "SelfManagedSettings",
    "StoredCerts",
    "ensure_certificates",
    "plan_certificates",
    "rotate_forever",
    "service_dns_names",
]

logger = logging.getLogger(__name__)

CA_CERT_KEY = "ca.crt"
CA_KEY_KEY = "ca.key"
TLS_CERT_KEY = "tls.crt"
TLS_KEY_KEY = "tls.key"
PREVIOUS_CA_KEY = "ca.previous.crt"

_SECRET_LABELS = {
    "app.kubernetes.io/name": "flyte-resources-webhook",
    "app.kubernetes.io/component": "webhook-certificates",
    "app.kubernetes.io/managed-by": "flyte-resources-webhook",
}
# Optimistic-concurrency retries: each lost race means another replica just wrote a fresh Secret, so the next
# read almost always settles it. A handful only guards against a writer that keeps fighting us.
_MAX_ATTEMPTS = 5
_REQUEST_TIMEOUT = 15.0
_MAX_BACKOFF = 300.0
# The Secret's current and previous CA plus leftovers of CAs that replaced each other (a Secret deleted a few
# times): a bound on what an ever-growing bundle would otherwise accumulate over a CA's ten-year life.
_MAX_TRUSTED_CAS = 8
DEFAULT_CHECK_INTERVAL = 30.0


@dataclass
class SelfManagedSettings:
    secret_name: str
    namespace: str
    webhook_config_name: str
    service_name: str
    cert_dir: Path
    renew_before: timedelta = timedelta(days=30)
    validity: timedelta = timedelta(days=365)
    # How often the Secret and the webhook configuration are re-read: the delay before a replica adopts a
    # Secret another replica rewrote, and before a caBundle edited by someone else is repaired. Polled, not
    # watched: a watch would need `list` and `watch` on Secrets as well, and two GETs per interval per replica
    # cost the apiserver nothing; the union keeps every replica trusted in between anyway.
    check_interval: float = DEFAULT_CHECK_INTERVAL
    ca_validity: timedelta = timedelta(days=3650)
    # First recheck after start, and the base of the backoff after a failure: short, so a webhook
    # configuration applied after the pod started gets its caBundle within seconds, not an hour.
    retry_interval: float = 10.0
    # Built from in-cluster config or KUBECONFIG on first use when not given.
    api_client: k8s.ApiClient | None = field(default=None, repr=False, compare=False)
    # When given, its `trusted` follows the caBundle last read from the webhook configuration (readiness).
    served: certs.ServedCertificate | None = field(default=None, repr=False, compare=False)
    # The webhook configuration's uid, once read: the Secret names it as its owner, so that deleting the
    # configuration (`helm uninstall`) lets the garbage collector delete the Secret too.
    webhook_uid: str | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.cert_dir = Path(self.cert_dir)
        for what, value in (
            ("secret name", self.secret_name),
            ("namespace", self.namespace),
            ("webhook configuration name", self.webhook_config_name),
            ("service name", self.service_name),
        ):
            if not value:
                raise ValueError(f"self-managed certificates need a {what}")
        if self.renew_before <= timedelta(0):
            raise ValueError("renew-before must be positive")
        # Otherwise every check would find the fresh certificate already due and re-issue it forever.
        if self.renew_before >= self.validity:
            raise ValueError(
                f"renew-before ({self.renew_before}) must be shorter than the certificate validity ({self.validity})"
            )
        if self.renew_before >= self.ca_validity:
            raise ValueError(
                f"renew-before ({self.renew_before}) must be shorter than the CA validity ({self.ca_validity})"
            )
        if not all(math.isfinite(i) and i > 0 for i in (self.check_interval, self.retry_interval)):
            raise ValueError("check and retry intervals must be positive numbers of seconds")

    @property
    def dns_names(self) -> tuple[str, ...]:
        return service_dns_names(self.service_name, self.namespace)

    @property
    def secret_ref(self) -> str:
        return f"{self.namespace}/{self.secret_name}"


def service_dns_names(service: str, namespace: str) -> tuple[str, ...]:
    """The names the apiserver may use to reach a Service (it dials `<svc>.<ns>.svc`)."""
    return (
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.cluster.local",
    )


# --- the decision, pure --------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredCerts:
    """The Secret's certificate material (PEM)."""

    ca_cert: bytes
    ca_key: bytes
    tls_cert: bytes
    tls_key: bytes
    previous_ca: bytes | None = None

    def to_data(self) -> dict[str, bytes]:
        data = {
            CA_CERT_KEY: self.ca_cert,
            CA_KEY_KEY: self.ca_key,
            TLS_CERT_KEY: self.tls_cert,
            TLS_KEY_KEY: self.tls_key,
        }
        if self.previous_ca:
            data[PREVIOUS_CA_KEY] = self.previous_ca
        return data

    @classmethod
    def from_data(cls, data: dict[str, bytes]) -> StoredCerts | None:
        """None when any of the four required keys is missing or empty."""
        required = (CA_CERT_KEY, CA_KEY_KEY, TLS_CERT_KEY, TLS_KEY_KEY)
        if not all(data.get(k) for k in required):
            return None
        return cls(
            ca_cert=data[CA_CERT_KEY],
            ca_key=data[CA_KEY_KEY],
            tls_cert=data[TLS_CERT_KEY],
            tls_key=data[TLS_KEY_KEY],
            previous_ca=data.get(PREVIOUS_CA_KEY) or None,
        )

    def trust_bundle(self, now: datetime) -> bytes:
        """What clients must trust: the current CA, then the previous CA while it has not expired."""
        bundle = certs.split_pem_certs(self.ca_cert)[:1]
        if self.previous_ca and _still_valid(self.previous_ca, now):
            bundle += [c for c in certs.split_pem_certs(self.previous_ca) if c not in bundle]
        return b"".join(bundle)

    def to_bundle(self, now: datetime) -> CertBundle:
        return CertBundle(
            ca_pem=self.trust_bundle(now),
            cert_pem=self.tls_cert,
            key_pem=self.tls_key,
            not_after=certs.read_not_after(self.tls_cert),
            ca_key_pem=self.ca_key,
        )


def _still_valid(cert_pem: bytes, now: datetime) -> bool:
    try:
        return certs.read_not_after(cert_pem) > now
    except CertificateError:
        return False


def _ca_problem(stored: StoredCerts, *, now: datetime, renew_before: timedelta) -> str | None:
    try:
        ca_certs = certs.split_pem_certs(stored.ca_cert)
    except CertificateError as e:
        return f"its CA certificate is unreadable ({e})"
    if len(ca_certs) != 1:
        return f"{CA_CERT_KEY} holds {len(ca_certs)} certificates, expected 1"
    if not certs.key_matches_cert(stored.ca_cert, stored.ca_key):
        return "its CA key does not match the CA certificate"
    if certs.needs_renewal(stored.ca_cert, now=now, renew_before=renew_before):
        return f"its CA expires at {certs.read_not_after(stored.ca_cert).isoformat()}"
    return None


def _leaf_problem(
    stored: StoredCerts, *, dns_names: tuple[str, ...], now: datetime, renew_before: timedelta
) -> str | None:
    try:
        not_after = certs.read_not_after(stored.tls_cert)
        sans, _ips = certs.cert_sans(stored.tls_cert)
    except CertificateError as e:
        return f"its serving certificate is unreadable ({e})"
    if not certs.key_matches_cert(stored.tls_cert, stored.tls_key):
        return "its serving key does not match the serving certificate"
    if not certs.signed_by(stored.tls_cert, stored.ca_cert):
        return "its serving certificate was not issued by its CA"
    if sans != frozenset(dns_names):
        return f"its serving certificate names {sorted(sans)}, expected {sorted(dns_names)}"
    if certs.needs_renewal(stored.tls_cert, now=now, renew_before=renew_before):
        return f"its serving certificate expires at {not_after.isoformat()}"
    not_before = certs.read_not_before(stored.tls_cert)
    # Written by a node with a clock far ahead: the apiserver would reject it until then.
    if not_before > now + timedelta(minutes=1):
        return f"its serving certificate is not valid before {not_before.isoformat()}"
    return None


def plan_certificates(
    stored: StoredCerts | None,
    *,
    dns_names: tuple[str, ...],
    now: datetime,
    renew_before: timedelta,
    validity: timedelta,
    ca_validity: timedelta,
) -> tuple[StoredCerts, str | None]:
    """Decide what the Secret should hold. Returns (material, why it changed) or (stored, None) to keep it."""
    if stored is None:
        ca = certs.generate_ca(validity=ca_validity, now=now)
        return _issue(ca, dns_names, validity, now, previous_ca=None), "it has no certificates yet"

    ca_problem = _ca_problem(stored, now=now, renew_before=renew_before)
    if ca_problem is not None:
        # The old CA stays trusted until it expires: replicas that have not picked up the new Secret yet still
        # serve a certificate it signed.
        previous = None
        try:
            old = certs.split_pem_certs(stored.ca_cert)[:1]
        except CertificateError:
            old = []
        if old and _still_valid(old[0], now):
            previous = old[0]
        ca = certs.generate_ca(validity=ca_validity, now=now)
        return _issue(ca, dns_names, validity, now, previous_ca=previous), ca_problem + " (new CA issued)"

    leaf_problem = _leaf_problem(stored, dns_names=dns_names, now=now, renew_before=renew_before)
    if leaf_problem is not None:
        previous = stored.previous_ca if stored.previous_ca and _still_valid(stored.previous_ca, now) else None
        return (
            _issue((stored.ca_cert, stored.ca_key), dns_names, validity, now, previous_ca=previous),
            leaf_problem + " (re-issued from the same CA)",
        )
    return stored, None


def _issue(
    ca: tuple[bytes, bytes],
    dns_names: tuple[str, ...],
    validity: timedelta,
    now: datetime,
    *,
    previous_ca: bytes | None,
) -> StoredCerts:
    cert_pem, key_pem = certs.issue_serving_cert(
        ca_cert_pem=ca[0],
        ca_key_pem=ca[1],
        dns_names=dns_names,
        validity=validity,
        common_name=dns_names[2] if len(dns_names) > 2 else dns_names[0],
        now=now,
    )
    return StoredCerts(ca_cert=ca[0], ca_key=ca[1], tls_cert=cert_pem, tls_key=key_pem, previous_ca=previous_ca)


# --- the Kubernetes API ----------------------------------------------------------------------------------


def _decode(value: str | bytes | None) -> bytes:
    if not value:
        return b""
    if isinstance(value, bytes):
        value = value.decode("ascii")
    return base64.b64decode(value)


def _encode(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


# The urllib3 transport errors (refused, timed out, TLS) share no base class with ApiException.
_API_ERRORS: tuple[type[Exception], ...] = (ApiException, OSError, urllib3.exceptions.HTTPError)


def _secret_rbac(s: SelfManagedSettings) -> str:
    return f'"get", "create" and "update" on secrets in namespace {s.namespace}'


def _sync_secret(core: k8s.CoreV1Api, s: SelfManagedSettings, now: datetime) -> StoredCerts:
    """The certificates the Secret holds once it is as it should be: read, planned, written when they (or its
    owner) must change; a write that lost a race with another replica is retried on a fresh read."""
    for _attempt in range(_MAX_ATTEMPTS):
        secret = _read_secret(core, s)
        data = {k: _decode(v) for k, v in ((secret.data or {}) if secret else {}).items()}
        desired, reason = plan_certificates(
            StoredCerts.from_data(data),
            dns_names=s.dns_names,
            now=now,
            renew_before=s.renew_before,
            validity=s.validity,
            ca_validity=s.ca_validity,
        )
        owners = _owners(secret, s)
        if reason is None and owners == _owner_references(secret):
            return desired
        verb = _write_secret(core, s, secret, desired, reason, owners)
        if verb is not None:
            _log_secret_write(s, verb, reason, desired)
            return desired
        logger.info("Secret %s was written by another replica meanwhile; re-reading it", s.secret_ref)
    raise KubeApiError(
        f"Secret {s.secret_ref} kept changing under us ({_MAX_ATTEMPTS} conflicting writes in a row); "
        "is another controller rewriting it?"
    )


def _read_secret(core: k8s.CoreV1Api, s: SelfManagedSettings) -> k8s.V1Secret | None:
    try:
        secret: k8s.V1Secret = core.read_namespaced_secret(
            s.secret_name, s.namespace, _request_timeout=_REQUEST_TIMEOUT
        )
    except ApiException as e:
        if e.status != 404:
            raise api_error(f"read Secret {s.secret_ref}", e, rbac_hint=_secret_rbac(s)) from None
        return None
    except _API_ERRORS as e:
        raise api_error(f"read Secret {s.secret_ref}", e, rbac_hint=_secret_rbac(s)) from None
    return secret


def _write_secret(
    core: k8s.CoreV1Api,
    s: SelfManagedSettings,
    secret: k8s.V1Secret | None,
    desired: StoredCerts,
    reason: str | None,
    owners: list[Any],
) -> str | None:
    """Create or update the Secret: "created", "updated", or None when another writer came first (409)."""
    encoded = {k: _encode(v) for k, v in desired.to_data().items()}
    try:
        if secret is None:
            core.create_namespaced_secret(
                s.namespace, _new_secret(s, encoded, owners), _request_timeout=_REQUEST_TIMEOUT
            )
            return "created"
        # Keys we do not own are kept; the resourceVersion read before makes a concurrent writer's update fail
        # with 409 instead of being silently overwritten.
        if reason is not None:
            secret.data = {**(secret.data or {}), **encoded}
            if PREVIOUS_CA_KEY not in encoded and secret.data:
                secret.data.pop(PREVIOUS_CA_KEY, None)
        if secret.metadata is not None:
            secret.metadata.owner_references = owners or None
        core.replace_namespaced_secret(s.secret_name, s.namespace, secret, _request_timeout=_REQUEST_TIMEOUT)
        return "updated"
    except ApiException as e:
        if e.status == 409:
            return None
        action = "create" if secret is None else "update"
        raise api_error(f"{action} Secret {s.secret_ref}", e, rbac_hint=_secret_rbac(s)) from None
    except _API_ERRORS as e:
        raise api_error(f"write Secret {s.secret_ref}", e, rbac_hint=_secret_rbac(s)) from None


def _new_secret(s: SelfManagedSettings, encoded: dict[str, str], owners: list[Any]) -> k8s.V1Secret:
    return k8s.V1Secret.model_validate(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": s.secret_name,
                "namespace": s.namespace,
                "labels": _SECRET_LABELS,
                "ownerReferences": owners or None,
            },
            "type": "kubernetes.io/tls",
            "data": encoded,
        }
    )


def _log_secret_write(s: SelfManagedSettings, verb: str, reason: str | None, desired: StoredCerts) -> None:
    if reason is None:
        logger.info("Secret %s now owned by MutatingWebhookConfiguration %s", s.secret_ref, s.webhook_config_name)
        return
    logger.info(
        "%s Secret %s because %s; serving certificate valid until %s",
        verb.capitalize(),
        s.secret_ref,
        reason,
        certs.read_not_after(desired.tls_cert).isoformat(),
    )


def _owners(secret: k8s.V1Secret | None, s: SelfManagedSettings) -> list[Any]:
    """The Secret's owner references with the webhook configuration's (once its uid is known) in place of any
    older one of that name (a configuration deleted and created again); others' references are kept."""
    current = _owner_references(secret)
    if s.webhook_uid is None:
        return current
    ours = k8s.V1OwnerReference(
        api_version="admissionregistration.k8s.io/v1",
        kind="MutatingWebhookConfiguration",
        name=s.webhook_config_name,
        uid=s.webhook_uid,
    )
    kept = [r for r in current if not (r.kind == ours.kind and r.name == ours.name)]
    return [*kept, ours] if ours not in current else current


def _owner_references(secret: k8s.V1Secret | None) -> list[Any]:
    metadata = secret.metadata if secret is not None else None
    return list((metadata.owner_references or []) if metadata is not None else [])


class _WebhookState(enum.Enum):
    TRUSTED = "trusted"  # every webhook entry carries our CA bundle
    MISSING = "missing"  # the configuration does not exist (yet), nothing calls us
    FAILED = "failed"  # could not be read or patched; logged, retried


def _sync_ca_bundle(
    adm: k8s.AdmissionregistrationV1Api, s: SelfManagedSettings, trust: bytes, local_ca: bytes | None
) -> tuple[_WebhookState, bytes | None]:
    """Make every webhook entry trust `trust` (the Secret's CAs) without dropping a CA that is still valid.

    Returns the state and the caBundle every entry now carries (None when there is no configuration).
    """
    name = s.webhook_config_name
    rbac = f'"get" and "patch" on mutatingwebhookconfigurations (resourceNames: [{name}])'
    for _attempt in range(_MAX_ATTEMPTS):
        try:
            mwc = adm.read_mutating_webhook_configuration(name, _request_timeout=_REQUEST_TIMEOUT)
        except ApiException as e:
            if e.status == 404:
                return _WebhookState.MISSING, None
            raise api_error(f"read MutatingWebhookConfiguration {name}", e, rbac_hint=rbac) from None
        except _API_ERRORS as e:
            raise api_error(f"read MutatingWebhookConfiguration {name}", e, rbac_hint=rbac) from None

        s.webhook_uid = (mwc.metadata.uid if mwc.metadata else None) or s.webhook_uid
        webhooks = mwc.webhooks or []
        current = [_decode(w.client_config.ca_bundle if w.client_config else None) for w in webhooks]
        if s.served is not None:
            # What the apiserver trusts right now, in case the patch below fails: readiness must not rely on a
            # bundle we only meant to write.
            s.served.trusted = _trusted_by_all(current)
        wanted = certs.merge_ca_bundles(trust, local_ca, *current, now=datetime.now(UTC), limit=_MAX_TRUSTED_CAS)
        # Conditional on everything read: when another writer changed the configuration since the GET (another
        # replica's caBundle, a reordered list), the test op fails and the union is computed again.
        version = mwc.metadata.resource_version if mwc.metadata else None
        ops: list[dict[str, Any]] = [{"op": "test", "path": "/metadata/resourceVersion", "value": version}]
        ops += [
            {"op": "add", "path": f"/webhooks/{i}/clientConfig/caBundle", "value": _encode(wanted)}
            for i, bundle in enumerate(current)
            if bundle != wanted
        ]
        if len(ops) == 1:
            if not webhooks:
                logger.warning("MutatingWebhookConfiguration %s has no webhooks to give a caBundle", name)
            return _WebhookState.TRUSTED, wanted
        try:
            adm.patch_mutating_webhook_configuration(
                name, ops, _content_type="application/json-patch+json", _request_timeout=_REQUEST_TIMEOUT
            )
        except ApiException as e:
            if e.status in (409, 422):  # the configuration changed between GET and PATCH (failed test op)
                logger.info("MutatingWebhookConfiguration %s changed while we patched it; re-reading it", name)
                continue
            if e.status == 404:
                return _WebhookState.MISSING, None
            raise api_error(f"patch MutatingWebhookConfiguration {name}", e, rbac_hint=rbac) from None
        except _API_ERRORS as e:
            raise api_error(f"patch MutatingWebhookConfiguration {name}", e, rbac_hint=rbac) from None
        logger.info(
            "Set caBundle (%d CA(s)) on %d webhook(s) of MutatingWebhookConfiguration %s",
            len(certs.split_pem_certs(wanted)),
            len(ops) - 1,
            name,
        )
        return _WebhookState.TRUSTED, wanted
    raise KubeApiError(f"MutatingWebhookConfiguration {name} kept changing while we patched its caBundle")


def _trusted_by_all(bundles: list[bytes]) -> bytes | None:
    """The CAs every webhook entry trusts (a call may go to any entry); None when there are no entries."""
    if not bundles:
        return None
    try:
        per_entry = [certs.split_pem_certs(b) if b else [] for b in bundles]
    except CertificateError:
        return b""
    common = [c for c in per_entry[0] if all(c in other for other in per_entry[1:])]
    return b"".join(common)


def _read_files(cert_dir: Path) -> tuple[bytes, bytes, bytes] | None:
    try:
        return (
            (cert_dir / certs.CERT_FILE).read_bytes(),
            (cert_dir / certs.KEY_FILE).read_bytes(),
            (cert_dir / certs.CA_FILE).read_bytes(),
        )
    except OSError:
        return None


def _signing_ca_of(files: tuple[bytes, bytes, bytes] | None) -> bytes | None:
    if files is None:
        return None
    try:
        return certs.split_pem_certs(files[2])[0]
    except (CertificateError, IndexError):
        return None


@dataclass(frozen=True)
class _Outcome:
    bundle: CertBundle
    webhook: _WebhookState
    files_written: bool


def _core_api(s: SelfManagedSettings) -> k8s.CoreV1Api:
    if s.api_client is None:
        s.api_client = kube_api_client()
    return k8s.CoreV1Api(s.api_client)


def _admission_api(s: SelfManagedSettings) -> k8s.AdmissionregistrationV1Api:
    if s.api_client is None:
        s.api_client = kube_api_client()
    return k8s.AdmissionregistrationV1Api(s.api_client)


def _sync_once(s: SelfManagedSettings, *, at_start: bool) -> _Outcome:
    now = datetime.now(UTC)
    stored = _sync_secret(_core_api(s), s, now)
    try:
        bundle = stored.to_bundle(now)
    except CertificateError as e:  # plan_certificates validated it; only a bug gets here
        raise KubeApiError(f"Secret {s.secret_ref} holds unusable certificates: {e}") from None

    adm = _admission_api(s)
    on_disk = _read_files(s.cert_dir)
    try:
        webhook, trusted = _sync_ca_bundle(adm, s, bundle.ca_pem, on_disk[2] if on_disk else None)
    except KubeApiError as e:
        if at_start or on_disk is None:
            raise
        # Serving a certificate from a CA the apiserver does not trust yet would fail every review, so a
        # new CA waits for the next attempt; a leaf from the already trusted CA is safe to roll out.
        if _signing_ca_of(on_disk) != certs.split_pem_certs(bundle.ca_pem)[0]:
            logger.error("%s; keeping the current certificate files until caBundle can be updated", e)
            raise
        logger.error("%s", e)
        webhook = _WebhookState.FAILED
    else:
        if s.served is not None:
            s.served.trusted = trusted

    if webhook is _WebhookState.MISSING:
        logger.warning(
            "MutatingWebhookConfiguration %s not found; its caBundle will be set once it exists",
            s.webhook_config_name,
        )

    wanted_files = (bundle.cert_pem, bundle.key_pem, bundle.ca_pem)
    written = False
    if on_disk != wanted_files:
        certs.write_bundle(bundle, s.cert_dir)
        written = True
        if on_disk is not None:
            logger.info(
                "Wrote renewed certificate files to %s (valid until %s); the server reloads them",
                s.cert_dir,
                bundle.not_after.isoformat(),
            )
    return _Outcome(bundle=bundle, webhook=webhook, files_written=written)


async def ensure_certificates(settings: SelfManagedSettings) -> CertBundle:
    """Start-time: make the Secret, caBundle and certificate files consistent; idempotent.

    Raises KubeApiError with a user-facing message when this cannot be done. A webhook configuration
    that does not exist yet is not an error: `rotate_forever` sets its caBundle once it appears.
    """
    try:
        outcome = await asyncio.to_thread(_sync_once, settings, at_start=True)
    except CertificateError as e:
        raise KubeApiError(str(e)) from None
    logger.info(
        "Serving certificate for %s from Secret %s, valid until %s",
        settings.dns_names[2],
        settings.secret_ref,
        outcome.bundle.not_after.isoformat(),
    )
    return outcome.bundle


async def rotate_forever(settings: SelfManagedSettings, stop: asyncio.Event) -> None:
    """Recheck every `check_interval` seconds until `stop` is set: renew, adopt other replicas' renewals,
    re-apply caBundle. Failures are logged and retried with backoff; they never end the loop."""
    delay = settings.retry_interval
    failures = 0
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), timeout=delay)
            return
        except TimeoutError:
            pass
        try:
            outcome = await asyncio.to_thread(_sync_once, settings, at_start=False)
        except (KubeApiError, CertificateError) as e:
            failures += 1
            logger.error("Certificate check failed (attempt %d): %s", failures, e)
        except Exception as e:  # a bug must not stop rotation: certificates expiring later would be worse
            failures += 1
            logger.error("Certificate check failed unexpectedly (attempt %d): %r", failures, e)
        else:
            if outcome.webhook is _WebhookState.TRUSTED:
                failures = 0
            else:
                failures += 1
        if failures:
            backoff = min(settings.retry_interval * 2 ** min(failures - 1, 16), _MAX_BACKOFF, settings.check_interval)
            delay = backoff * random.uniform(0.8, 1.2)  # replicas should not hammer the API in lockstep
        else:
            delay = settings.check_interval
