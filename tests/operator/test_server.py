"""The admission server over real HTTPS (kopf's WebhookServer and TLS), and kopf's own path for the same handler.

No API server is needed here: the server is started on its own, as kopf would start it after discovery. The full
operator against a real kube-apiserver is covered in tests/e2e.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import os
import pwd
import ssl
from pathlib import Path

import aiohttp
import jsonpatch
import kopf
import pytest
from kopf._cogs.structs import references  # private, as in kopf's own admission tests
from kopf._core.engines import admission, indexing
from kopf._core.reactor import inventory

from hack.cluster.processes import free_port
from hack.webhook_process import local_options
from tests.operator.test_review import admission_review
from webhook.engine.config import WebhookConfig
from webhook.operator.certs import generate_bundle, write_bundle
from webhook.operator.review import PodReviewer
from webhook.operator.server import HANDLER_ID, build_server, name_the_user, register_handler

P = "resources.flyte.org/"
ANNOTATIONS = {P + "resources": "cpu=1:2,gpu=1", P + "accelerator": "T4", P + "shared-memory": "1Gi"}


@pytest.fixture
def certs(tmp_path: Path):
    bundle = generate_bundle(ip_addresses=["127.0.0.1"], dns_names=["localhost"])
    write_bundle(bundle, tmp_path)
    return tmp_path, bundle


def patched(review, response):
    ops = json.loads(base64.b64decode(response["response"]["patch"]))
    return jsonpatch.apply_patch(copy.deepcopy(review["request"]["object"]), ops)


async def _post(port: int, ca: bytes, path: str, payload) -> tuple[int, dict]:
    context = ssl.create_default_context(cadata=ca.decode())
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"https://127.0.0.1:{port}{path}", json=payload, ssl=context) as reply,
    ):
        body = await reply.json() if reply.content_type == "application/json" else {}
        return reply.status, body


def test_fast_path_answers_over_https_kopf_ids_go_to_kopf_and_other_paths_are_404(certs):
    directory, bundle = certs
    port = free_port()
    options = local_options(port, directory)
    reviewer = PodReviewer(WebhookConfig.from_mapping({}))
    server = build_server(options, reviewer)
    server.kopf_ids.add("kopf-served")
    fallback_calls = []

    async def kopf_fn(request, **kwargs):
        fallback_calls.append(kwargs["webhook"])
        return {"response": {"uid": request["request"]["uid"], "allowed": True}}

    async def scenario():
        serving = server(kopf_fn)
        client_config = await serving.__anext__()
        assert server.listening.is_set()
        assert client_config["url"].startswith(f"https://127.0.0.1:{port}")
        review = admission_review(ANNOTATIONS)
        status, body = await _post(port, bundle.ca_pem, f"/{HANDLER_ID}", review)
        assert status == 200
        pod = patched(review, body)
        main = pod["spec"]["containers"][0]
        assert main["resources"]["limits"] == {"cpu": "2", "nvidia.com/gpu": "1", "memory": "1Gi"}
        assert main["volumeMounts"] == [{"name": "flyte-shared-memory", "mountPath": "/dev/shm"}]
        status, body = await _post(port, bundle.ca_pem, "/kopf-served", review)
        assert status == 200 and fallback_calls == ["kopf-served"]
        for path in ("/something-else", "/", f"/{HANDLER_ID}/x", "/FLYTE-RESOURCES"):
            status, _ = await _post(port, bundle.ca_pem, path, review)
            assert status == 404, path
        assert fallback_calls == ["kopf-served"], "kopf would answer an unknown path allowed: true"
        status, _ = await _post(port, bundle.ca_pem, f"/{HANDLER_ID}", {"no": "request"})
        assert status == 400
        await serving.aclose()

    asyncio.run(scenario())


def test_kopf_handler_through_kopfs_admission_path_gives_the_same_pod():
    """When kopf serves the review itself (e.g. behind another kopf server), the result must be identical."""
    config = WebhookConfig.from_mapping({})
    reviewer = PodReviewer(config)
    registry = kopf.OperatorRegistry()
    register_handler(registry, reviewer)
    insights = references.Insights()
    insights.webhook_resources.add(references.Resource("", "v1", "pods", kind="Pod", namespaced=True))
    review = admission_review(ANNOTATIONS)

    async def through_kopf(request):
        return await admission.serve_admission_request(
            request,
            webhook=HANDLER_ID,
            settings=kopf.OperatorSettings(),
            registry=registry,
            insights=insights,
            memories=inventory.ResourceMemories(),
            memobase=kopf.Memo(),
            indices=indexing.OperatorIndexers().indices,
        )

    via_kopf = asyncio.run(through_kopf(copy.deepcopy(review)))
    direct = reviewer(copy.deepcopy(review))
    assert via_kopf["response"]["allowed"] is True
    assert patched(review, via_kopf) == patched(review, direct)
    assert via_kopf["response"]["warnings"] == direct["response"]["warnings"]

    bad = admission_review({P + "accelerator": "A999"})
    denied = asyncio.run(through_kopf(bad))
    assert denied["response"]["allowed"] is False
    assert denied["response"]["status"]["code"] == 400
    assert "A999" in denied["response"]["status"]["message"]


@pytest.fixture
def running(certs):
    """Our server on a free port, as `run` builds it, with an event loop of its own."""
    directory, bundle = certs
    port = free_port()
    options = local_options(port, directory)
    server = build_server(options, PodReviewer(WebhookConfig.from_mapping({})))

    async def kopf_fn(request, **kwargs):  # kopf's answer to an id it does not know
        return {"response": {"uid": "", "allowed": True}}

    def post(path: str, body: bytes, chunked: bool = False) -> tuple[int, str, bytes]:
        async def chunks():  # no Content-Length: the server reads until the end, or the limit
            for start in range(0, len(body), 256 * 1024):
                yield body[start : start + 256 * 1024]

        async def scenario():
            serving = server(kopf_fn)
            await serving.__anext__()
            try:
                context = ssl.create_default_context(cadata=bundle.ca_pem.decode())
                async with (
                    aiohttp.ClientSession() as session,
                    session.post(
                        f"https://127.0.0.1:{port}{path}", data=chunks() if chunked else body, ssl=context
                    ) as reply,
                ):
                    return reply.status, reply.reason or "", await reply.read()
            finally:
                await serving.aclose()

        return asyncio.run(scenario())

    return post


def test_a_pod_of_1_1_mb_is_admitted_and_bodies_up_to_3_mib_are_read(running):
    review = admission_review(ANNOTATIONS)
    review["request"]["object"]["spec"]["containers"][0]["env"] = [{"name": "BIG", "value": "x" * 1_100_000}]
    status, _, body = running(f"/{HANDLER_ID}", json.dumps(review).encode())
    assert status == 200
    response = json.loads(body)["response"]
    assert response["allowed"] is True and "patch" in response
    review["request"]["object"]["spec"]["containers"][0]["env"][0]["value"] = "x" * (3 * 1024 * 1024 - 2048)
    status, _, _ = running(f"/{HANDLER_ID}", json.dumps(review).encode())
    assert status == 200


@pytest.mark.parametrize("chunked", [False, True])
def test_a_body_above_3_mib_is_refused_with_413(running, chunked):
    body = b'{"request": {"uid": "' + b"x" * (3 * 1024 * 1024 + 1) + b'"}}'
    status, _, _ = running(f"/{HANDLER_ID}", body, chunked)
    assert status == 413


def test_a_chunked_review_is_read_to_its_end(running):
    review = admission_review(ANNOTATIONS)
    review["request"]["object"]["spec"]["containers"][0]["env"] = [{"name": "BIG", "value": "x" * 1_100_000}]
    status, _, body = running(f"/{HANDLER_ID}", json.dumps(review).encode(), chunked=True)
    assert status == 200 and "patch" in json.loads(body)["response"]


@pytest.mark.parametrize(
    "body",
    [b"", b"{", b"not json", b"[]", b"null", b"{}", b'{"request": "x"}', b'{"request": []}', b"\xff\xfe"],
)
def test_a_body_that_is_not_an_admission_review_is_a_400_with_a_reason(running, body):
    status, reason, _ = running(f"/{HANDLER_ID}", body)
    assert status == 400
    assert reason and reason != "Bad Request"


@pytest.mark.parametrize(
    "change",
    [
        lambda r: r["request"].update(uid={"a": [[[[[[[[1]]]]]]]]}),
        lambda r: r["request"].update(uid=[[1]] * 300),
        lambda r: r["request"]["object"].update(metadata="x"),
        lambda r: r["request"]["object"]["spec"].update(containers="x"),
        lambda r: r["request"]["object"]["metadata"]["annotations"].update({P + "resources": {"cpu": 1}}),
        lambda r: r.update(apiVersion={"x": 1}),
    ],
)
def test_a_malformed_review_gets_a_valid_admission_review_never_a_500(running, change):
    review = admission_review(ANNOTATIONS)
    change(review)
    status, _, body = running(f"/{HANDLER_ID}", json.dumps(review).encode())
    assert status == 200
    reply = json.loads(body)
    assert reply["apiVersion"] == "admission.k8s.io/v1" and reply["kind"] == "AdmissionReview"
    assert isinstance(reply["response"]["uid"], str)
    assert reply["response"].get("status", {}).get("code", 200) < 500


def test_a_uid_without_a_passwd_entry_gets_a_user_name_for_kopf(monkeypatch: pytest.MonkeyPatch) -> None:
    """kopf's identity calls getpass.getuser(); under an unknown UID with no LOGNAME/USER it raises (as in a pod
    with an OpenShift-assigned UID) unless the server names the user first."""
    from kopf._core.engines import peering  # private, as above

    for variable in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.delenv(variable, raising=False)

    def unknown(uid: int) -> pwd.struct_passwd:
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    monkeypatch.setattr(pwd, "getpwuid", unknown)
    monkeypatch.delenv("POD_ID", raising=False)
    with pytest.raises(KeyError):
        peering.detect_own_id(manual=False)
    name_the_user()
    assert str(peering.detect_own_id(manual=False)).startswith(f"{os.getuid()}@")
