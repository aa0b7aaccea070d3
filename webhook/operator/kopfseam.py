"""The one seam with kopf's internals: `AdmissionServer` overrides `kopf.WebhookServer._serve`, a private
staticmethod, to answer our endpoints from the JSON Patch we already have instead of kopf's deep-copy-and-diff.

kopf is pinned (pyproject.toml) to the version tests/operator/test_kopf_seam.py checks; that test fails loudly when
kopf's version changes or its server stops dispatching through `self._serve`.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import aiohttp.web
import kopf
import orjson

FastHandler = Callable[[Mapping[str, Any]], dict[str, Any]]


# The apiserver accepts requests up to 3 MiB and stores objects up to etcd's ~1.5 MiB, and the AdmissionReview
# wraps the object; kopf's aiohttp app keeps aiohttp's 1 MiB default, which refused legal pods with HTTP 413.
MAX_REQUEST_BYTES = 3 * 1024 * 1024
_REASON_CHARS = 200


class AdmissionServer(kopf.WebhookServer):
    """kopf's HTTPS webhook server that answers some endpoints directly with prepared AdmissionReviews.

    The seam: kopf's `WebhookServer.__call__` builds the aiohttp app (listener, TLS, certificate reload) and
    routes every `POST /{id}` to `self._serve(fn, request)`, a private staticmethod. Overriding it is the only
    way to answer from our own JSON Patch instead of kopf's deep-copy-and-diff; kopf is pinned to the minor
    series this was checked against, and tests/operator/test_kopf_seam.py fails loudly when kopf stops
    dispatching through `_serve`. Ids in `fast` are ours; any other path is a 404 (kopf would answer it
    `allowed: true`).
    """

    def __init__(
        self,
        *args: Any,
        fast: Mapping[str, FastHandler] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.fast = dict(fast or {})
        self.listening = asyncio.Event()
        # While > 0 (a drain before shutdown), every answer closes its connection: see `server.start_probes`.
        self.draining = 0

    async def __call__(self, fn: Any) -> AsyncIterator[Any]:
        async for client_config in super().__call__(fn):
            # Everything imported and built so far lives as long as the process: keep the collector from
            # re-scanning it on every full collection (pauses of several ms at the tail of the latency).
            gc.freeze()
            self.listening.set()  # kopf yields once the TLS site is bound: the moment we are ready
            yield client_config

    async def _serve(self, fn: Any, request: aiohttp.web.Request) -> aiohttp.web.Response:  # type: ignore[override]
        webhook = request.match_info.get("id", "")
        handler = self.fast.get(webhook)
        if handler is None:
            raise aiohttp.web.HTTPNotFound(reason=_reason(f"no admission webhook at /{webhook}"))
        return self._answer(handler, await _read_body(request))

    def _answer(self, handler: FastHandler, body: bytes) -> aiohttp.web.Response:
        """The reply to one request body: 400 with a reason unless it is an AdmissionReview, else the handler's."""
        try:
            review = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise aiohttp.web.HTTPBadRequest(reason=_reason(f"request body is not JSON: {exc}")) from None
        if not isinstance(review, dict) or not isinstance(review.get("request"), dict):
            raise aiohttp.web.HTTPBadRequest(reason="not an AdmissionReview: no request object")
        response = aiohttp.web.Response(body=orjson.dumps(handler(review)), content_type="application/json")
        if self.draining:
            response.force_close()  # `Connection: close`: the client retires this connection, we do not cut it
        return response


async def _read_body(request: aiohttp.web.Request) -> bytes:
    """The request body up to MAX_REQUEST_BYTES (413 above), read from the stream: the app kopf built keeps its
    own 1 MiB limit for everything else. (`request.clone(client_max_size=...)` would do the same at ~50 us a
    request, a third of a review.)"""
    length = request.content_length
    if length is not None:
        if length > MAX_REQUEST_BYTES:
            raise aiohttp.web.HTTPRequestEntityTooLarge(max_size=MAX_REQUEST_BYTES, actual_size=length)
        try:
            return await request.content.readexactly(length)
        except asyncio.IncompleteReadError:
            raise aiohttp.web.HTTPBadRequest(reason="request body shorter than its Content-Length") from None
    body = bytearray()
    while chunk := await request.content.readany():
        body += chunk
        if len(body) > MAX_REQUEST_BYTES:
            raise aiohttp.web.HTTPRequestEntityTooLarge(max_size=MAX_REQUEST_BYTES, actual_size=len(body))
    return bytes(body)


def _reason(text: str) -> str:
    """An HTTP reason phrase: one line, short, printable ASCII."""
    return "".join(c if c.isascii() and c.isprintable() else "?" for c in text[:_REASON_CHARS])
