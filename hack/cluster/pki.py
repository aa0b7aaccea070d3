"""The local cluster's certificates, laid out as kubeadm lays out a real one (on a smaller scale).

One cluster CA signs the apiserver's serving certificate (IP SAN 127.0.0.1) and one client certificate per
component (ECDSA P-256: generating keys takes milliseconds, which keeps a warm start short). The apiserver trusts
that CA for client certificates (`--client-ca-file`) and reads a certificate's CN as the user name and each O as a
group, so `CN=system:kube-scheduler` gets exactly what the built-in `system:kube-scheduler` ClusterRoleBinding
grants, as on any kubeadm cluster.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from webhook.operator import certs

VALIDITY = datetime.timedelta(days=2)  # a local cluster lives for one run


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _name(common_name: str, organizations: tuple[str, ...] = ()) -> x509.Name:
    parts = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations]
    return x509.Name([*parts, x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


@dataclass(frozen=True)
class KeyPair:
    cert: Path
    key: Path


class ClusterCA:
    """The cluster CA (`directory/ca.crt`), made and used by the product's own certificate module for the CA and
    the apiserver's serving certificate; `issue()` adds client certificates, which that module does not make."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.pem, self._key_pem = certs.generate_ca(common_name="frw-local-cluster", validity=VALIDITY)
        self._cert = x509.load_pem_x509_certificate(self.pem)
        self._key = serialization.load_pem_private_key(self._key_pem, password=None)
        self.cert_file = directory / "ca.crt"
        self.cert_file.write_bytes(self.pem)

    def _write(self, name: str, cert_pem: bytes, key_pem: bytes) -> KeyPair:
        pair = KeyPair(self.directory / f"{name}.crt", self.directory / f"{name}.key")
        pair.cert.write_bytes(cert_pem)
        pair.key.write_bytes(key_pem)
        pair.key.chmod(0o600)
        return pair

    def serving(self, name: str, extra_ips: tuple[str, ...] = ()) -> KeyPair:
        """A serving certificate for 127.0.0.1 and localhost (and `extra_ips`, e.g. a pod network's gateway)."""
        cert_pem, key_pem = certs.issue_serving_cert(
            ca_cert_pem=self.pem,
            ca_key_pem=self._key_pem,
            ip_addresses=["127.0.0.1", *extra_ips],
            dns_names=["localhost"],
            validity=VALIDITY,
            common_name=name,
        )
        return self._write(name, cert_pem, key_pem)

    def issue(self, name: str, *, common_name: str, organizations: tuple[str, ...] = ()) -> KeyPair:
        """A client certificate: the apiserver reads CN as the user name and each O as a group."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name, organizations))
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(self._key, hashes.SHA256())  # type: ignore[arg-type]
        )
        return self._write(name, cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def write_signing_key(path: Path) -> tuple[Path, Path]:
    """The service-account token signing key (ES256) and its public half (`.pub`): the apiserver signs with the
    first and verifies with the second, the controller-manager's token controller signs with the first."""
    key = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
    )
    path.chmod(0o600)
    public = path.with_suffix(".pub")
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return path, public
