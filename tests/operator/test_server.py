"""The admission server over real HTTPS (kopf's WebhookServer and TLS), and kopf's own path for the same handler.

No API server is needed here: the server is started on its own, as kopf would start it after discovery. The full
operator against a real kube-apiserver is covered in tests/e2e.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import ssl
from pathlib import Path

import aiohttp
import jsonpatch
import pytest

from hack.cluster.processes import free_port
from hack.reviews import admission_review
from hack.webhook_process import local_options
from webhook.engine.config import WebhookConfig
from webhook.operator.certs import generate_bundle, write_bundle
from webhook.operator.review import PodReviewer
from webhook.operator.server import HANDLER_ID, build_server

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


def test_our_paths_are_answered_over_https_and_every_other_path_is_a_404(certs):
    directory, bundle = certs
    port = free_port()
    options = local_options(port, directory)
    reviewer = PodReviewer(WebhookConfig.from_mapping({}))
    server = build_server(options, reviewer)
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
        for path in ("/something-else", "/", f"/{HANDLER_ID}/x", "/FLYTE-RESOURCES"):
            status, _ = await _post(port, bundle.ca_pem, path, review)
            assert status == 404, path
        assert fallback_calls == [], "kopf would answer an unknown path allowed: true"
        status, _ = await _post(port, bundle.ca_pem, f"/{HANDLER_ID}", {"no": "request"})
        assert status == 400
        await serving.aclose()

    asyncio.run(scenario())


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


def test_while_the_prestop_drain_runs_every_answer_closes_its_connection(certs):
    """The chart's preStop hook (`GET /drain?seconds=N` on the probe port): for N seconds each review's answer says
    `Connection: close`, so the apiserver retires the keep-alive connections it holds to a replica about to stop
    instead of having one cut under a request (an EOF it does not retry: a failed pod create). Before and after,
    connections are kept alive."""
    from dataclasses import replace

    from webhook.operator.metrics import Metrics
    from webhook.operator.server import start_probes

    directory, bundle = certs
    port, probe_port = free_port(), free_port()
    options = replace(local_options(port, directory), probe_addr="127.0.0.1", probe_port=probe_port)
    server = build_server(options, PodReviewer(WebhookConfig.from_mapping({})))

    async def kopf_fn(request, **kwargs):
        return {"response": {"uid": "", "allowed": True}}

    async def connection_header(session: aiohttp.ClientSession) -> str | None:
        context = ssl.create_default_context(cadata=bundle.ca_pem.decode())
        url = f"https://127.0.0.1:{port}/{HANDLER_ID}"
        async with session.post(url, json=admission_review(ANNOTATIONS), ssl=context) as reply:
            assert reply.status == 200
            return reply.headers.get("Connection")

    async def scenario():
        serving = server(kopf_fn)
        await serving.__anext__()
        probes = await start_probes(options, server, Metrics())
        try:
            async with aiohttp.ClientSession() as session:
                assert (await connection_header(session) or "").lower() != "close"
                drain = asyncio.create_task(session.get(f"http://127.0.0.1:{probe_port}/drain?seconds=1"))
                await asyncio.sleep(0.3)
                assert (await connection_header(session) or "").lower() == "close"
                reply = await drain
                assert reply.status == 200 and await reply.text() == "drained"
                assert (await connection_header(session) or "").lower() != "close"
                for bad in ("", "x", "-1", "301", "1e3", "\u0661"):
                    async with session.get(f"http://127.0.0.1:{probe_port}/drain", params={"seconds": bad}) as r:
                        assert r.status == 400, bad
        finally:
            await probes.cleanup()
            await serving.aclose()

    asyncio.run(scenario())
