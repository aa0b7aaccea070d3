"""The contract with kopf that the fast path relies on (`webhook/operator/kopfseam.py`): kopf's server dispatches
every review to `self._serve`.

`AdmissionServer` overrides `kopf.WebhookServer._serve`, a private staticmethod. If a kopf release renames it,
changes its signature or stops calling it through `self`, every review would silently take kopf's generic path
(slower, and answering unknown paths `allowed: true`); these tests fail first. The installed kopf must be the
version series this was checked against: a new one fails here until the seam is checked again and the pin moved.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import inspect
import json
import ssl

import aiohttp
import kopf

from hack.cluster.processes import free_port
from hack.reviews import admission_review
from webhook.operator.certs import generate_bundle, write_bundle
from webhook.operator.kopfseam import AdmissionServer

# The kopf series the seam was checked against, and the bound pyproject.toml pins it with.
CHECKED_KOPF_SERIES, PIN_BELOW = "1.45.", "<1.46"


def test_the_installed_kopf_is_the_series_the_seam_was_checked_against():
    version = importlib.metadata.version("kopf")
    assert version.startswith(CHECKED_KOPF_SERIES), (
        f"kopf {version} is installed, the seam (webhook/operator/kopfseam.py) was checked against "
        f"{CHECKED_KOPF_SERIES}x: check kopf.WebhookServer.__call__ still routes through self._serve, then move the "
        "pin in pyproject.toml and here"
    )
    pin = next(r for r in importlib.metadata.requires("flyte-resources-webhook") or [] if r.startswith("kopf"))
    assert PIN_BELOW in pin, f"pyproject.toml pins {pin}: the seam was checked for {CHECKED_KOPF_SERIES}x only"


def test_kopf_webhook_server_serve_is_the_staticmethod_we_override():
    raw = inspect.getattr_static(kopf.WebhookServer, "_serve")
    assert isinstance(raw, staticmethod), "kopf.WebhookServer._serve is no longer a staticmethod"
    parameters = list(inspect.signature(kopf.WebhookServer._serve).parameters)
    assert parameters == ["fn", "request"], f"kopf.WebhookServer._serve now takes {parameters}"
    assert inspect.iscoroutinefunction(kopf.WebhookServer._serve)
    assert "_serve" in AdmissionServer.__dict__


def test_a_request_through_kopfs_own_server_reaches_our_override(tmp_path):
    path = "ours"
    bundle = generate_bundle(ip_addresses=["127.0.0.1"], dns_names=["localhost"])
    write_bundle(bundle, tmp_path)
    port = free_port()
    answered = []

    def ours(review):
        answered.append(review["request"]["uid"])
        return {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": {"uid": "u", "allowed": True},
        }

    server = AdmissionServer(
        addr="127.0.0.1",
        port=port,
        certfile=str(tmp_path / "tls.crt"),
        pkeyfile=str(tmp_path / "tls.key"),
        fast={path: ours},
    )
    kopf_path = []

    async def kopf_fn(request, **kwargs):
        kopf_path.append(kwargs.get("webhook"))
        return {"response": {"uid": "", "allowed": True}}

    async def scenario():
        # kopf.WebhookServer.__call__ builds the aiohttp app and its route; nothing of ours in between.
        serving = kopf.WebhookServer.__call__(server, kopf_fn)
        await serving.__anext__()
        try:
            context = ssl.create_default_context(cadata=bundle.ca_pem.decode())
            async with (
                aiohttp.ClientSession() as session,
                session.post(f"https://127.0.0.1:{port}/{path}", json=admission_review(), ssl=context) as reply,
            ):
                return reply.status, await reply.read()
        finally:
            await serving.aclose()

    status, body = asyncio.run(scenario())
    assert kopf_path == [], "kopf routed our endpoint through its generic path, not through self._serve"
    assert status == 200 and json.loads(body)["response"]["uid"] == "u"
    assert answered == [admission_review()["request"]["uid"]]


def test_our_peering_identity_reaches_kopf_so_no_passwd_entry_is_needed(monkeypatch):
    # kopf's default identity calls getpass.getuser(), which raises under a UID without a passwd entry.
    import getpass

    from kopf._core.reactor import running

    from webhook.operator.server import own_identity

    def no_user() -> str:
        raise KeyError("getpwuid(): uid not found: 1000660000")

    monkeypatch.setattr(getpass, "getuser", no_user)
    assert own_identity().startswith("flyte-resources-webhook@")
    assert "identity" in inspect.signature(kopf.operator).parameters
    assert "identity" in inspect.signature(running.spawn_tasks).parameters
