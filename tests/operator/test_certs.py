"""Certificate generation and file handling, without a cluster."""

from __future__ import annotations

import socket
import ssl
import stat
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from webhook.operator import certs
from webhook.operator.certs import CertBundle, CertificateError

NAMES = ("svc", "svc.ns", "svc.ns.svc", "svc.ns.svc.cluster.local")


@pytest.fixture(scope="module")
def bundle() -> CertBundle:
    return certs.generate_bundle(dns_names=[*NAMES, "localhost"], ip_addresses=["127.0.0.1", "::1"])


def _load(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def test_serving_cert_has_the_requested_sans(bundle: CertBundle) -> None:
    dns, ips = certs.cert_sans(bundle.cert_pem)
    assert dns == {*NAMES, "localhost"}
    assert ips == {"127.0.0.1", "::1"}


def test_serving_cert_is_a_server_auth_leaf_with_ecdsa_p256(bundle: CertBundle) -> None:
    cert = _load(bundle.cert_pem)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    key = cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    assert key.curve.name == "secp256r1"
    assert certs.key_matches_cert(bundle.cert_pem, bundle.key_pem)


def test_ca_is_a_ca_and_signed_the_leaf(bundle: CertBundle) -> None:
    ca = _load(bundle.ca_pem)
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca is True
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    leaf = _load(bundle.cert_pem)
    leaf.verify_directly_issued_by(ca)
    assert certs.signed_by(bundle.cert_pem, bundle.ca_pem)
    assert bundle.ca_key_pem is not None and certs.key_matches_cert(bundle.ca_pem, bundle.ca_key_pem)


def test_validity_and_not_after(bundle: CertBundle) -> None:
    leaf = _load(bundle.cert_pem)
    now = datetime.now(UTC)
    assert bundle.not_after == leaf.not_valid_after_utc == certs.read_not_after(bundle.cert_pem)
    assert timedelta(days=364) < bundle.not_after - now <= timedelta(days=365)
    # Backdated so a slightly slow apiserver clock does not see a "not yet valid" certificate.
    assert leaf.not_valid_before_utc < now - timedelta(minutes=1)
    assert _load(bundle.ca_pem).not_valid_after_utc - now > timedelta(days=3649)


def test_reissue_from_the_same_ca_keeps_the_ca(bundle: CertBundle) -> None:
    assert bundle.ca_key_pem is not None
    again = certs.generate_bundle(dns_names=NAMES, ca=(bundle.ca_pem, bundle.ca_key_pem))
    assert again.ca_pem == bundle.ca_pem
    assert again.cert_pem != bundle.cert_pem and again.key_pem != bundle.key_pem
    assert certs.signed_by(again.cert_pem, bundle.ca_pem)


def test_leaf_never_outlives_its_ca() -> None:
    ca = certs.generate_ca(validity=timedelta(days=10))
    leaf = certs.generate_bundle(dns_names=["a"], ca=ca, validity=timedelta(days=365))
    assert leaf.not_after == certs.read_not_after(ca[0])


def test_other_ca_did_not_sign(bundle: CertBundle) -> None:
    other = certs.generate_bundle(dns_names=["x"])
    assert not certs.signed_by(bundle.cert_pem, other.ca_pem)
    assert not certs.key_matches_cert(bundle.cert_pem, other.key_pem)


def test_bad_inputs_give_clear_errors(bundle: CertBundle) -> None:
    with pytest.raises(CertificateError, match="at least one DNS name or IP address"):
        certs.generate_bundle()
    with pytest.raises(CertificateError, match="not an IP address"):
        certs.generate_bundle(ip_addresses=["localhost"])
    with pytest.raises(CertificateError, match="not a PEM certificate"):
        certs.read_not_after(b"garbage")
    other = certs.generate_ca()
    with pytest.raises(CertificateError, match="does not belong"):
        certs.generate_bundle(dns_names=["a"], ca=(bundle.ca_pem, other[1]))


@pytest.mark.parametrize(
    ("left", "renew_before", "expected"),
    [
        (timedelta(days=31), timedelta(days=30), False),
        (timedelta(days=29), timedelta(days=30), True),
        (timedelta(days=30), timedelta(days=30), True),
        (-timedelta(days=1), timedelta(days=30), True),
        (timedelta(hours=2), timedelta(hours=1), False),
    ],
)
def test_needs_renewal(bundle: CertBundle, left: timedelta, renew_before: timedelta, expected: bool) -> None:
    now = bundle.not_after - left
    assert certs.needs_renewal(bundle.cert_pem, now=now, renew_before=renew_before) is expected


def test_unreadable_cert_needs_renewal() -> None:
    assert certs.needs_renewal(b"nope", now=datetime.now(UTC), renew_before=timedelta(days=1))


def test_split_pem_certs_round_trips(bundle: CertBundle) -> None:
    other = certs.generate_ca()[0]
    parts = certs.split_pem_certs(bundle.ca_pem + other)
    assert parts == [bundle.ca_pem, other]


# --- files ---------------------------------------------------------------------------------------


def test_write_bundle_paths_contents_and_modes(bundle: CertBundle, tmp_path: Path) -> None:
    target = tmp_path / "certs"
    cert_path, key_path, ca_path = certs.write_bundle(bundle, target)
    assert (cert_path, key_path, ca_path) == (target / "tls.crt", target / "tls.key", target / "ca.crt")
    assert cert_path.read_bytes() == bundle.cert_pem
    assert key_path.read_bytes() == bundle.key_pem
    assert ca_path.read_bytes() == bundle.ca_pem
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(cert_path.stat().st_mode) == 0o644


def test_write_bundle_swaps_all_files_at_once_and_cleans_up(bundle: CertBundle, tmp_path: Path) -> None:
    certs.write_bundle(bundle, tmp_path)
    newer = certs.generate_bundle(dns_names=["other"])
    certs.write_bundle(newer, tmp_path)
    assert (tmp_path / "tls.crt").read_bytes() == newer.cert_pem
    assert (tmp_path / "tls.key").read_bytes() == newer.key_pem
    # The three public names resolve through one symlink, so one rename switches them together.
    for name in ("tls.crt", "tls.key", "ca.crt"):
        assert (tmp_path / name).is_symlink()
        assert (tmp_path / name).resolve().parent == (tmp_path / "..data").resolve()
    versions = [p for p in tmp_path.iterdir() if p.is_dir() and not p.is_symlink()]
    assert len(versions) == 1
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("..")) == [
        "ca.crt",
        "tls.crt",
        "tls.key",
    ]


def test_write_bundle_replaces_plain_files(bundle: CertBundle, tmp_path: Path) -> None:
    (tmp_path / "tls.crt").write_bytes(b"old")
    (tmp_path / "tls.key").write_bytes(b"old")
    certs.write_bundle(bundle, tmp_path)
    assert (tmp_path / "tls.crt").read_bytes() == bundle.cert_pem
    assert (tmp_path / "tls.key").read_bytes() == bundle.key_pem


def test_readers_never_see_a_mismatched_pair(tmp_path: Path) -> None:
    bundles = [certs.generate_bundle(dns_names=[f"n{i}"]) for i in range(2)]
    pairs = {(b.cert_pem, b.key_pem) for b in bundles}
    certs.write_bundle(bundles[0], tmp_path)
    stop = threading.Event()
    seen_bad: list[str] = []

    def reader() -> None:
        while not stop.is_set():
            # kopf reads the files one after another; with the directory swap a pair read via ..data is
            # always consistent.
            data_dir = (tmp_path / "..data").resolve()
            try:
                pair = ((data_dir / "tls.crt").read_bytes(), (data_dir / "tls.key").read_bytes())
            except FileNotFoundError:
                continue  # an old version removed between resolve() and read: a retry sees the new one
            if pair not in pairs:
                seen_bad.append("mismatch")

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(40):
            certs.write_bundle(bundles[i % 2], tmp_path)
    finally:
        stop.set()
        thread.join()
    assert not seen_bad


def test_write_bundle_into_unwritable_place_is_a_clear_error(bundle: CertBundle, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(CertificateError, match="cannot write certificate files into"):
        certs.write_bundle(bundle, blocker / "sub")


# --- a real TLS handshake -------------------------------------------------------------------------


def test_tls_handshake_verifies_with_the_ca_and_ip_san(tmp_path: Path) -> None:
    bundle = certs.generate_bundle(dns_names=["localhost"], ip_addresses=["127.0.0.1"])
    cert_path, key_path, ca_path = certs.write_bundle(bundle, tmp_path)

    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert_path, key_path)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            conn, _ = listener.accept()
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                tls.sendall(tls.recv(16).upper())
        except BaseException as e:  # reported by the assertion below
            errors.append(e)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        client_ctx = ssl.create_default_context(cafile=str(ca_path))
        assert client_ctx.check_hostname and client_ctx.verify_mode == ssl.CERT_REQUIRED
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            client_ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            tls.sendall(b"ping")
            assert tls.recv(16) == b"PING"
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
    finally:
        thread.join(timeout=5)
        listener.close()
    assert not errors


def test_tls_handshake_fails_with_another_ca(tmp_path: Path) -> None:
    bundle = certs.generate_bundle(ip_addresses=["127.0.0.1"])
    cert_path, key_path, _ = certs.write_bundle(bundle, tmp_path)
    stranger = certs.generate_ca()[0]

    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert_path, key_path)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            server_ctx.wrap_socket(conn, server_side=True).close()
        except (ssl.SSLError, OSError):
            conn.close()

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        client_ctx = ssl.create_default_context(cadata=stranger.decode())
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            pytest.raises(ssl.SSLCertVerificationError),
        ):
            client_ctx.wrap_socket(raw, server_hostname="127.0.0.1")
    finally:
        thread.join(timeout=5)
        listener.close()


# --- kopf's reloader with our file layout ---------------------------------------------------------


def test_kopf_webhook_server_serves_a_rewritten_bundle(tmp_path: Path) -> None:
    import asyncio

    import kopf

    first = certs.generate_bundle(ip_addresses=["127.0.0.1"])
    assert first.ca_key_pem is not None
    second = certs.generate_bundle(ip_addresses=["127.0.0.1"], ca=(first.ca_pem, first.ca_key_pem))
    cert_path, key_path, ca_path = certs.write_bundle(first, tmp_path)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    def served_cert() -> bytes:
        ctx = ssl.create_default_context(cafile=str(ca_path))
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            der = tls.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)

    async def scenario() -> tuple[bytes, bytes]:
        server = kopf.WebhookServer(
            addr="127.0.0.1",
            port=port,
            certfile=str(cert_path),
            pkeyfile=str(key_path),
            cafile=str(ca_path),
            file_check_interval=0.1,
        )

        async def no_op(*_: object, **__: object) -> dict[str, object]:
            return {}

        configs = server(no_op)  # type: ignore[arg-type]
        await asyncio.wait_for(configs.__anext__(), 10)
        # kopf takes its baseline digest once resumed after yielding the client config.
        restarted = asyncio.ensure_future(configs.__anext__())
        try:
            await asyncio.sleep(0.3)
            before = await asyncio.to_thread(served_cert)
            certs.write_bundle(second, tmp_path)
            await asyncio.wait_for(restarted, 10)
            after = await asyncio.to_thread(served_cert)
        finally:
            restarted.cancel()
            await configs.aclose()  # type: ignore[attr-defined]
        return before, after

    before, after = asyncio.run(scenario())
    assert before == first.cert_pem
    assert after == second.cert_pem


# --- caBundle union and the served certificate's health ----------------------------------------------------

DAY = timedelta(days=1)


def _ca(days_ago: int = 0, validity_days: int = 3650) -> bytes:
    now = datetime.now(UTC) - timedelta(days=days_ago)
    return certs.generate_ca(now=now, validity=timedelta(days=validity_days))[0]


def test_merge_ca_bundles_keeps_order_drops_duplicates_expired_and_garbage() -> None:
    a, b, c = _ca(), _ca(), _ca()
    expired = _ca(days_ago=10, validity_days=1)
    now = datetime.now(UTC)
    merged = certs.merge_ca_bundles(a, None, b + expired, b"not pem", a + c, b"", now=now, limit=8)
    assert certs.split_pem_certs(merged) == [a, b, c]
    # Byte-for-byte the same certificate however it was encoded (a trailing newline more, CRLF).
    assert certs.merge_ca_bundles(a.replace(b"\n", b"\r\n"), a, now=now, limit=8) == a


def test_merge_ca_bundles_limit_keeps_the_first() -> None:
    cas = [_ca() for _ in range(4)]
    merged = certs.merge_ca_bundles(*cas, now=datetime.now(UTC), limit=3)
    assert certs.split_pem_certs(merged) == cas[:3]
    assert certs.merge_ca_bundles(now=datetime.now(UTC), limit=3) == b""


def _served(tmp_path: Path, bundle: CertBundle, **kw: object) -> certs.ServedCertificate:
    cert_file, _key, ca_file = certs.write_bundle(bundle, tmp_path)
    return certs.ServedCertificate(cert_file=cert_file, ca_file=ca_file, **kw)  # type: ignore[arg-type]


def test_served_certificate_fine_expired_and_not_yet_valid(tmp_path: Path, bundle: CertBundle) -> None:
    served = _served(tmp_path, bundle)
    assert served.problem() is None
    assert served.expiry_timestamp() == bundle.not_after.timestamp()
    later = bundle.not_after + timedelta(seconds=1)
    assert "expired at" in (served.problem(later) or "")
    earlier = certs.read_not_before(bundle.cert_pem) - DAY
    assert "not valid before" in (served.problem(earlier) or "")


def test_served_certificate_must_be_signed_by_the_trusted_bundle(tmp_path: Path, bundle: CertBundle) -> None:
    other_ca = _ca()
    served = _served(tmp_path, bundle, trusted=other_ca)
    assert "not signed by any CA in the webhook's caBundle" in (served.problem() or "")
    served.trusted = other_ca + bundle.ca_pem  # a union that holds ours
    assert served.problem() is None
    # Without a known caBundle the CA file stands in.
    served.trusted = None
    served.ca_file.write_bytes(other_ca)  # type: ignore[union-attr]
    assert "not signed" in (served.problem() or "")


def test_served_certificate_unreadable(tmp_path: Path) -> None:
    served = certs.ServedCertificate(cert_file=tmp_path / "missing.crt")
    assert "no readable serving certificate" in (served.problem() or "")
    assert served.expiry_timestamp() != served.expiry_timestamp()  # NaN


def test_readyz_and_expiry_gauge_follow_the_served_certificate(tmp_path: Path, bundle: CertBundle) -> None:
    """The probe server: ready while the served certificate is valid and trusted, unready when it is not."""
    import asyncio
    import types

    import aiohttp

    from webhook.operator.metrics import Metrics
    from webhook.operator.server import ServerOptions, start_probes

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    served = _served(tmp_path, bundle)
    options = ServerOptions(probe_addr="127.0.0.1", probe_port=port, served=served)
    listener = types.SimpleNamespace(listening=asyncio.Event())

    async def get(path: str) -> tuple[int, str]:
        async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}{path}") as reply:
            return reply.status, await reply.text()

    async def gauges() -> dict[str, float]:
        _, text = await get("/metrics")
        found = {}
        for line in text.splitlines():
            for name in ("trusted", "ready"):
                if line.startswith(f"flyte_resources_webhook_{'certificate_' if name == 'trusted' else ''}{name} "):
                    found[name] = float(line.split()[-1])
        return found

    async def scenario() -> None:
        runner = await start_probes(options, listener, Metrics())  # type: ignore[arg-type]
        try:
            assert (await get("/readyz"))[0] == 503  # listener not up yet
            assert await gauges() == {"trusted": 1.0, "ready": 0.0}
            listener.listening.set()
            assert await get("/readyz") == (200, "ok")
            _, metrics = await get("/metrics")
            line = next(m for m in metrics.splitlines() if m.startswith("flyte_resources_webhook_certificate_expiry"))
            assert float(line.split()[-1]) == bundle.not_after.timestamp()
            assert await gauges() == {"trusted": 1.0, "ready": 1.0}

            served.trusted = _ca()  # the caBundle lost our CA
            status, text = await get("/readyz")
            assert status == 503 and "not signed by any CA in the webhook's caBundle" in text
            assert await gauges() == {"trusted": 0.0, "ready": 0.0}
            served.trusted = None

            past = datetime.now(UTC) - 10 * DAY
            ca_pem, ca_key = certs.generate_ca(now=past)
            cert_pem, key_pem = certs.issue_serving_cert(
                ca_cert_pem=ca_pem, ca_key_pem=ca_key, dns_names=["x"], validity=DAY, now=past
            )
            certs.write_bundle(CertBundle(ca_pem, cert_pem, key_pem, certs.read_not_after(cert_pem)), tmp_path)
            status, text = await get("/readyz")
            assert status == 503 and "expired at" in text
        finally:
            await runner.cleanup()

    asyncio.run(scenario())


def test_served_chain_through_an_intermediate_is_trusted_by_its_root(tmp_path: Path) -> None:
    """cert-manager with an external issuer: tls.crt holds leaf + intermediate, ca.crt only the root."""
    root_pem, root_key = certs.generate_ca(common_name="root")
    root = _load(root_pem)
    inter_key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    inter = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "intermediate")]))
        .issuer_name(root.subject)
        .public_key(inter_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - DAY)
        .not_valid_after(now + 30 * DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(serialization.load_pem_private_key(root_key, None), hashes.SHA256())  # type: ignore[arg-type]
    )
    inter_pem = inter.public_bytes(serialization.Encoding.PEM)
    inter_key_pem = inter_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    leaf_pem, _ = certs.issue_serving_cert(ca_cert_pem=inter_pem, ca_key_pem=inter_key_pem, dns_names=["svc"])
    (tmp_path / "tls.crt").write_bytes(leaf_pem + inter_pem)
    served = certs.ServedCertificate(cert_file=tmp_path / "tls.crt", trusted=root_pem)
    assert served.problem() is None
    served.trusted = inter_pem  # trusting the intermediate itself is enough too
    assert served.problem() is None
    served.trusted = _ca()
    assert "not signed" in (served.problem() or "")
    (tmp_path / "tls.crt").write_bytes(leaf_pem)  # the intermediate not served: the root alone cannot vouch
    served.trusted = root_pem
    assert "not signed" in (served.problem() or "")


def test_a_service_name_longer_than_a_common_name_is_served_by_its_san() -> None:
    # A release named `frw-preset-karpenter` in namespace `flyte-resources-webhook` gives a 69-character
    # `<svc>.<ns>.svc`: over X.509's 64-character commonName bound, which once stopped self-managed mode.
    ca = certs.generate_ca()
    long_name = "frw-preset-karpenter-flyte-resources-webhook.flyte-resources-webhook.svc"
    cert_pem, _ = certs.issue_serving_cert(
        ca_cert_pem=ca[0], ca_key_pem=ca[1], dns_names=[long_name], common_name=long_name
    )
    assert certs.cert_sans(cert_pem)[0] == {long_name}
    subject = _load(cert_pem).subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)
    assert [a.value for a in subject] == ["flyte-resources-webhook"]
