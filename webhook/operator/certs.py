"""Certificate material for the webhook's HTTPS listener, built with `cryptography`.

kopf can self-sign, but its generator depends on oscrypto, which fails to load on OpenSSL >= 3.0.10. We generate
our own: a CA plus a serving certificate signed by it, ECDSA P-256 because key generation is instant and every
Kubernetes apiserver accepts it.

The CA key travels with the bundle so a serving certificate can be re-issued from the same CA: the CA is what
the apiserver trusts (`caBundle`), so keeping it stable across leaf rotations keeps the webhook configuration
untouched.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "CA_FILE",
    "CERT_FILE",
    "KEY_FILE",
    "CertBundle",
    "CertificateError",
    "ServedCertificate",
    "cert_sans",
    "generate_bundle",
    "generate_ca",
    "issue_serving_cert",
    "key_matches_cert",
    "merge_ca_bundles",
    "needs_renewal",
    "read_not_after",
    "read_not_before",
    "signed_by",
    "split_pem_certs",
    "write_bundle",
]

CERT_FILE = "tls.crt"
KEY_FILE = "tls.key"
CA_FILE = "ca.crt"

# Clocks of the apiserver and of the node issuing the certificate may disagree; a certificate that is "not yet
# valid" for a few seconds after rotation would fail every admission call in that window.
_BACKDATE = timedelta(minutes=5)


class CertificateError(ValueError):
    """Certificate material that cannot be parsed or does not fit together."""


@dataclass(frozen=True)
class CertBundle:
    """PEM material for one serving setup.

    `ca_pem` is what clients must trust (it may hold more than one CA certificate while a CA rotation is
    in progress); `ca_key_pem` is the key of the CA that signed `cert_pem`, kept so the serving certificate
    can be re-issued without changing what clients trust. `not_after`: the serving certificate's expiry (UTC).
    """

    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes
    not_after: datetime
    ca_key_pem: bytes | None = None


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _now() -> datetime:
    return datetime.now(UTC)


def _load_cert(pem: bytes, what: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError as e:
        raise CertificateError(f"{what} is not a PEM certificate: {e}") from None


def _load_ec_key(pem: bytes, what: str) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as e:
        raise CertificateError(f"{what} is not an unencrypted PEM private key: {e}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertificateError(f"{what} is a {type(key).__name__}, expected an ECDSA key")
    return key


def generate_ca(
    *,
    common_name: str = "flyte-resources-webhook",
    validity: timedelta = timedelta(days=3650),
    now: datetime | None = None,
) -> tuple[bytes, bytes]:
    """A self-signed CA that signs serving certificates only (path length 0). Returns (cert PEM, key PEM)."""
    now = now or _now()
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{common_name}-ca")])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


# RFC 5280's upper bound for a commonName. Clients verify the subjectAltNames, so a longer name (a Service DNS name
# of a long release name) goes into the certificate as a SAN only and the subject takes a name that fits.
_COMMON_NAME_MAX = 64


def _common_name(preferred: str) -> str:
    return preferred if 0 < len(preferred) <= _COMMON_NAME_MAX else "flyte-resources-webhook"


def issue_serving_cert(
    *,
    ca_cert_pem: bytes,
    ca_key_pem: bytes,
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[str] = (),
    validity: timedelta = timedelta(days=365),
    common_name: str = "flyte-resources-webhook",
    now: datetime | None = None,
) -> tuple[bytes, bytes]:
    """A serving certificate signed by the given CA. Returns (cert PEM, key PEM).

    Its expiry never exceeds the CA's: a leaf outliving its issuer would fail verification anyway, and
    capping it makes "renew the leaf when it nears expiry" also cover "the CA nears expiry".
    """
    if not dns_names and not ip_addresses:
        raise CertificateError("a serving certificate needs at least one DNS name or IP address")
    now = now or _now()
    ca_cert = _load_cert(ca_cert_pem, "the CA certificate")
    ca_key = _load_ec_key(ca_key_pem, "the CA key")
    if ca_cert.public_key() != ca_key.public_key():
        raise CertificateError("the CA key does not belong to the CA certificate")

    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    for ip in ip_addresses:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(ip)))
        except ValueError:
            raise CertificateError(f"not an IP address: {ip!r}") from None

    key = _new_key()
    not_after = min(now + validity, ca_cert.not_valid_after_utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, _common_name(common_name))]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def generate_bundle(
    *,
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[str] = (),
    ca: tuple[bytes, bytes] | None = None,
    validity: timedelta = timedelta(days=365),
    ca_validity: timedelta = timedelta(days=3650),
    common_name: str = "flyte-resources-webhook",
) -> CertBundle:
    """A serving certificate for the given names, signed by `ca` (cert PEM, key PEM) or by a new CA."""
    now = _now()
    if ca is None:
        ca = generate_ca(common_name=common_name, validity=ca_validity, now=now)
    ca_cert_pem, ca_key_pem = ca
    cert_pem, key_pem = issue_serving_cert(
        ca_cert_pem=ca_cert_pem,
        ca_key_pem=ca_key_pem,
        dns_names=dns_names,
        ip_addresses=ip_addresses,
        validity=validity,
        common_name=common_name,
        now=now,
    )
    return CertBundle(
        ca_pem=ca_cert_pem,
        cert_pem=cert_pem,
        key_pem=key_pem,
        not_after=read_not_after(cert_pem),
        ca_key_pem=ca_key_pem,
    )


def read_not_after(cert_pem: bytes) -> datetime:
    """Expiry (UTC, timezone-aware) of the first certificate in `cert_pem`."""
    return _load_cert(cert_pem, "the certificate").not_valid_after_utc


def read_not_before(cert_pem: bytes) -> datetime:
    """Start of validity (UTC, timezone-aware) of the first certificate in `cert_pem`."""
    return _load_cert(cert_pem, "the certificate").not_valid_before_utc


def needs_renewal(cert_pem: bytes, *, now: datetime, renew_before: timedelta) -> bool:
    """True when the certificate expires within `renew_before` of `now` (or already has, or is unreadable)."""
    try:
        not_after = read_not_after(cert_pem)
    except CertificateError:
        return True
    return not_after - renew_before <= now


def cert_sans(cert_pem: bytes) -> tuple[frozenset[str], frozenset[str]]:
    """(DNS names, IP addresses) of a certificate's subjectAltName; empty sets when it has none."""
    cert = _load_cert(cert_pem, "the certificate")
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return frozenset(), frozenset()
    dns = frozenset(san.get_values_for_type(x509.DNSName))
    ips = frozenset(str(ip) for ip in san.get_values_for_type(x509.IPAddress))
    return dns, ips


def key_matches_cert(cert_pem: bytes, key_pem: bytes) -> bool:
    try:
        return _load_cert(cert_pem, "cert").public_key() == _load_ec_key(key_pem, "key").public_key()
    except CertificateError:
        return False


def signed_by(cert_pem: bytes, ca_cert_pem: bytes) -> bool:
    """True when `cert_pem` was issued and signed by the CA in `ca_cert_pem`."""
    try:
        cert = _load_cert(cert_pem, "cert")
        ca = _load_cert(ca_cert_pem, "CA cert")
        cert.verify_directly_issued_by(ca)
    except (CertificateError, InvalidSignature, ValueError, TypeError):
        return False
    return True


def split_pem_certs(pem: bytes) -> list[bytes]:
    """The individual certificates of a PEM bundle, each re-encoded canonically; unparsable input raises."""
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError as e:
        raise CertificateError(f"not a PEM certificate bundle: {e}") from None
    return [c.public_bytes(serialization.Encoding.PEM) for c in certs]


def merge_ca_bundles(*bundles: bytes | None, now: datetime, limit: int) -> bytes:
    """One PEM bundle of the certificates in `bundles`, in order, each once; expired ones are dropped.

    A bundle that does not parse contributes nothing (the caller's own sources are validated elsewhere; a
    foreign caBundle may hold anything). At most `limit` certificates are kept, the first ones: callers list
    the CAs they need most first, so what falls off the end is the oldest leftover.
    """
    merged: list[bytes] = []
    seen: set[bytes] = set()
    for bundle in bundles:
        if not bundle:
            continue
        try:
            parsed = x509.load_pem_x509_certificates(bundle)
        except ValueError:
            continue
        for cert in parsed:
            der = cert.public_bytes(serialization.Encoding.DER)
            if der in seen or cert.not_valid_after_utc <= now:
                continue
            seen.add(der)
            merged.append(cert.public_bytes(serialization.Encoding.PEM))
    return b"".join(merged[:limit])


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def _chains_to(chain: list[x509.Certificate], bundle: bytes) -> bool:
    """True when the leaf (`chain[0]`), through the intermediates served after it, is issued by a CA in
    `bundle` (or one of the served certificates is itself in `bundle`)."""
    try:
        trusted = x509.load_pem_x509_certificates(bundle)
    except ValueError:
        return False
    current, rest = chain[0], chain[1:]
    for _ in range(len(chain)):
        if current in trusted or any(_issued_by(current, ca) for ca in trusted):
            return True
        parent = next((c for c in rest if _issued_by(current, c)), None)
        if parent is None:
            return False
        rest.remove(parent)
        current = parent
    return False


@dataclass
class ServedCertificate:
    """The certificate the HTTPS listener serves, read from its file on every check (the server reloads it).

    `trusted` is what the apiserver trusts, when known: self-managed mode sets it from the caBundle it last
    read from the MutatingWebhookConfiguration; otherwise `ca_file` stands in (cert-manager's cainjector
    copies the Secret's ca.crt into caBundle). With neither, only validity in time is checked.
    """

    cert_file: Path
    ca_file: Path | None = None
    trusted: bytes | None = None

    def _read(self) -> list[x509.Certificate]:
        """The served chain, leaf first; empty when the file cannot be read."""
        try:
            return x509.load_pem_x509_certificates(self.cert_file.read_bytes())
        except (OSError, ValueError):
            return []

    def expiry_timestamp(self) -> float:
        """Seconds since the epoch when the served certificate expires; NaN while it cannot be read."""
        chain = self._read()
        return chain[0].not_valid_after_utc.timestamp() if chain else float("nan")

    def problem(self, now: datetime | None = None) -> str | None:
        """Why clients cannot use the served certificate now, or None."""
        now = now or _now()
        chain = self._read()
        if not chain:
            return f"no readable serving certificate at {self.cert_file}"
        cert = chain[0]
        if cert.not_valid_after_utc <= now:
            return f"the serving certificate expired at {cert.not_valid_after_utc.isoformat()}"
        if cert.not_valid_before_utc > now:
            return f"the serving certificate is not valid before {cert.not_valid_before_utc.isoformat()}"
        trusted = self.trusted
        if trusted is None and self.ca_file is not None:
            try:
                trusted = self.ca_file.read_bytes()
            except OSError:
                trusted = None
        if trusted is not None and not _chains_to(chain, trusted):
            return "the serving certificate is not signed by any CA in the webhook's caBundle"
        return None


# --- writing files for kopf's WebhookServer ---------------------------------------------------------------
#
# kopf re-hashes tls.crt, tls.key and ca.crt every file_check_interval seconds and, on a change, reloads them
# with load_cert_chain(). Renaming each file into place is not enough: kopf could notice a new tls.crt before
# tls.key has been swapped and load a mismatched pair, which kills the listener. So the files live in a
# versioned directory and the public names are symlinks through one `..data` symlink, which is swapped with a
# single rename: every reader sees either the old triple or the new one (the layout the kubelet uses for
# Secret volumes, so tools that watch mounted Secrets understand it too).

_DATA_LINK = "..data"


def _atomic_symlink(target: str, link: Path) -> None:
    tmp = link.with_name(f"{link.name}.tmp-{secrets.token_hex(4)}")
    os.symlink(target, tmp)
    try:
        os.replace(tmp, link)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _write_file(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(path, mode)  # the umask may have narrowed the mode given to open()


def write_bundle(bundle: CertBundle, directory: Path) -> tuple[Path, Path, Path]:
    """Write tls.crt, tls.key (0600) and ca.crt into `directory` atomically; return their paths in that order.

    Older versions are removed. A regular file already at one of the names is replaced by the symlink.
    """
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        version = Path(tempfile.mkdtemp(prefix=f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.", dir=directory))
        os.chmod(version, 0o755)
        _write_file(version / CERT_FILE, bundle.cert_pem, 0o644)
        _write_file(version / KEY_FILE, bundle.key_pem, 0o600)
        _write_file(version / CA_FILE, bundle.ca_pem, 0o644)
        dir_fd = os.open(version, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

        _atomic_symlink(version.name, directory / _DATA_LINK)
        for name in (CERT_FILE, KEY_FILE, CA_FILE):
            public = directory / name
            wanted = f"{_DATA_LINK}/{name}"
            if not (public.is_symlink() and os.readlink(public) == wanted):
                _atomic_symlink(wanted, public)
    except OSError as e:
        reason = e.strerror or str(e)
        raise CertificateError(f"cannot write certificate files into {directory}: {reason}") from None

    for old in directory.glob("..*"):
        if old.name not in (_DATA_LINK, version.name) and old.is_dir() and not old.is_symlink():
            _remove_tree(old)
    return directory / CERT_FILE, directory / KEY_FILE, directory / CA_FILE


def _remove_tree(path: Path) -> None:
    # Best effort: a leftover old version only costs a few bytes and is cleaned up on the next write.
    with contextlib.suppress(OSError):
        for child in path.iterdir():
            child.unlink()
        path.rmdir()
