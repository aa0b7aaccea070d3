"""kopf wiring: the mutating handler, the HTTPS admission server, probes, metrics and the operator lifecycle.

kopf owns the listener, TLS and certificate reload, API login and discovery, signals and shutdown. Its generic
admission path builds each response by deep-copying the whole pod and diffing it against the handler's edits
(about 1 ms of CPU for a 5 KB Flyte pod). Our mutation already yields the JSON Patch ops, so `AdmissionServer`,
a `kopf.WebhookServer`, answers the endpoints of handlers registered with `fast=` straight from those ops; the
kopf handler of the same id stays registered for a kopf server of someone else's, and any other path is a 404.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import logging
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp.web
import jsonpatch
import kopf
import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from webhook.engine.config import WebhookConfig
from webhook.operator.certs import ServedCertificate
from webhook.operator.configreview import VALIDATE_CONFIG_PATH, review_config_map
from webhook.operator.metrics import Metrics
from webhook.operator.reload import DEFAULT_INTERVAL, ConfigMetrics, ConfigReloader, LastGood
from webhook.operator.review import PodReviewer

HANDLER_ID = "flyte-resources"
logger = logging.getLogger("flyte_resources_webhook")

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
    dispatching through `_serve`. Ids in `fast` are ours; ids in `kopf_ids` go to kopf's generic path; any
    other path is a 404 (kopf would answer it `allowed: true`).
    """

    def __init__(
        self,
        *args: Any,
        fast: Mapping[str, FastHandler] | None = None,
        kopf_ids: Iterable[str] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.fast = dict(fast or {})
        self.kopf_ids = set(kopf_ids)
        self.listening = asyncio.Event()

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
            if webhook in self.kopf_ids:
                return await kopf.WebhookServer._serve(fn, request)
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
        return aiohttp.web.Response(body=orjson.dumps(handler(review)), content_type="application/json")


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


def own_identity() -> Any:
    """kopf's peering identity, ours: kopf's default asks `getpass.getuser()`, which raises under a UID without
    a passwd entry (`runAsUser` overrides, OpenShift's random UIDs); the process must start under any UID. (With
    peering off it only names this process in kopf's logs.)"""
    from kopf._core.engines.peering import Identity

    return Identity(f"flyte-resources-webhook@{socket.gethostname()}/{os.getpid()}")


def register_login(registry: kopf.OperatorRegistry, failed: Callable[[kopf.LoginError], None] | None = None) -> None:
    """kopf adds its login handlers only to its global registry; ours is private, so it brings its own.

    No kubeconfig and no ServiceAccount is a setup problem that kopf's retries (every 60 s, a stack trace each
    time, while nothing serves) cannot fix: the login fails for good and `failed` is told, so `run` can stop and
    say so. The handler is async so that kopf runs it on the event loop, where `failed` may touch asyncio state.
    """

    @kopf.on.login(registry=registry)
    async def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        try:
            return kopf.login_via_client(**kwargs)
        except kopf.LoginError as exc:
            if failed is not None:
                failed(exc)
            raise kopf.PermanentError(str(exc)) from None


def register_handler(registry: kopf.OperatorRegistry, reviewer: PodReviewer) -> None:
    """The kopf handler of record: its id is the URL path; kopf's own path runs it when we are not the server."""

    @kopf.on.mutate("v1", "pods", id=HANDLER_ID, operations={"CREATE"}, registry=registry)  # type: ignore[arg-type]
    async def flyte_resources(
        body: kopf.Body, patch: kopf.Patch, warnings: list[str], operation: str | None, **_: Any
    ) -> None:
        # The same reviewer as the fast path (async: on the loop, never in kopf's thread pool), so denials, on-error
        # and metrics behave alike; the ops travel as a transformation kopf applies to its copy of the pod.
        review = {"request": {"operation": operation or "CREATE", "object": dict(body)}}
        response = reviewer(review)["response"]
        warnings.extend(response.get("warnings", ()))
        if not response["allowed"]:
            status = response.get("status", {})
            raise kopf.AdmissionError(status.get("message", "denied"), code=status.get("code", 400))
        if "patch" in response:
            ops = orjson.loads(base64.b64decode(response["patch"]))
            patch.fns.append(lambda raw: jsonpatch.apply_patch(raw, ops, in_place=True))


@dataclass
class ServerOptions:
    addr: str = "0.0.0.0"
    port: int = 9443
    probe_addr: str = "0.0.0.0"
    probe_port: int = 8080
    cert_file: Path | None = None
    key_file: Path | None = None
    ca_file: Path | None = None
    file_check_interval: float = 60.0
    # What /readyz and the expiry gauge inspect; self-managed mode passes one that follows the caBundle it read.
    # Default: cert_file, trusted through ca_file.
    served: ServedCertificate | None = None
    # The config file to watch for live reloads (None: the configuration never changes while serving).
    config_file: Path | None = None
    config_check_interval: float = DEFAULT_INTERVAL
    last_good: LastGood | None = None  # where the configurations served are kept for a restart


def build_server(options: ServerOptions, reviewer: PodReviewer) -> AdmissionServer:
    return AdmissionServer(
        addr=options.addr,
        port=options.port,
        certfile=str(options.cert_file) if options.cert_file else None,
        pkeyfile=str(options.key_file) if options.key_file else None,
        cafile=str(options.ca_file) if options.ca_file and options.ca_file.exists() else None,
        file_check_interval=options.file_check_interval,
        fast={HANDLER_ID: reviewer, VALIDATE_CONFIG_PATH: review_config_map},
    )


async def start_probes(options: ServerOptions, server: AdmissionServer, metrics: Metrics) -> aiohttp.web.AppRunner:
    served = options.served
    if served is None and options.cert_file is not None:
        served = ServedCertificate(cert_file=options.cert_file, ca_file=options.ca_file)
    if served is not None:
        metrics.certificate_expiry.set_function(served.expiry_timestamp)
        metrics.certificate_trusted.set_function(lambda: float(served.problem() is None))

    def unready() -> str | None:
        """Why the webhook is not ready, or None: what /readyz answers and the ready gauge shows."""
        if not server.listening.is_set():
            return "admission listener not started yet"
        # An expired or untrusted certificate fails every call the apiserver makes: out of the Service's
        # endpoints until the certificate check repairs it, so the apiserver calls a replica that works.
        return served.problem() if served is not None else None

    metrics.ready.set_function(lambda: float(unready() is None))

    async def healthz(_: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.Response(text="ok")

    async def readyz(_: aiohttp.web.Request) -> aiohttp.web.Response:
        problem = unready()
        if problem is not None:
            return aiohttp.web.Response(status=503, text=problem)
        return aiohttp.web.Response(text="ok")

    async def metrics_view(_: aiohttp.web.Request) -> aiohttp.web.Response:
        body = generate_latest(metrics.registry)
        return aiohttp.web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = aiohttp.web.Application()
    app.add_routes(
        [
            aiohttp.web.get("/healthz", healthz),
            aiohttp.web.get("/readyz", readyz),
            aiohttp.web.get("/metrics", metrics_view),
        ]
    )
    runner = aiohttp.web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await aiohttp.web.TCPSite(runner, options.probe_addr, options.probe_port).start()
    return runner


@dataclass
class Lifecycle:
    """What a mode of `run` adds around the server; `serve` runs every part and lets no failure pass silently.

    `prepare` runs before the server starts (its failure stops `run` before anything listens); `when_listening`
    once the HTTPS listener is up; `background` alongside the server until it stops (it gets the stop flag); and
    `cleanup` on every exit: a stop signal, a failure of any part, or a failure of the server itself. A failure
    of `when_listening` or `background` stops the server, then is raised from `serve`.
    """

    prepare: Callable[[], Awaitable[None]] | None = None
    when_listening: Callable[[], Awaitable[None]] | None = None
    background: Callable[[asyncio.Event], Coroutine[Any, Any, None]] | None = None
    cleanup: Callable[[], Awaitable[None]] | None = None


async def serve(
    config: WebhookConfig,
    options: ServerOptions,
    *,
    stop_flag: asyncio.Event | None = None,
    lifecycle: Lifecycle | None = None,
) -> None:
    """Run until SIGINT/SIGTERM (or `stop_flag`): kopf in admission-only mode plus our probe endpoint."""
    lifecycle = lifecycle or Lifecycle()
    stop = stop_flag or asyncio.Event()
    try:
        if lifecycle.prepare is not None:
            await lifecycle.prepare()
        await _serve_until_stopped(config, options, stop, lifecycle)
    finally:
        if lifecycle.cleanup is not None:
            await lifecycle.cleanup()
        logger.info("stopped")


async def _serve_until_stopped(
    config: WebhookConfig, options: ServerOptions, stop: asyncio.Event, lifecycle: Lifecycle
) -> None:
    metrics = Metrics()
    reviewer = PodReviewer(config, metrics)
    config_metrics = ConfigMetrics(metrics.registry, config)
    registry = kopf.OperatorRegistry()
    login_failures: list[kopf.LoginError] = []

    def login_failed(exc: kopf.LoginError) -> None:
        login_failures.append(exc)
        stop.set()  # kopf would wait for credentials forever

    register_login(registry, login_failed)
    register_handler(registry, reviewer)
    server = build_server(options, reviewer)

    settings = kopf.OperatorSettings()
    settings.admission.server = server
    settings.admission.managed = None  # the chart (or --dev) owns the MutatingWebhookConfiguration
    settings.scanning.disabled = True
    settings.posting.enabled = False
    settings.networking.error_backoffs = [1, 1, 2, 3, 5, 8]

    probes = await start_probes(options, server, metrics)
    logger.info(
        "serving admission reviews on https://%s:%d/%s (probes and metrics on http://%s:%d)",
        options.addr,
        options.port,
        HANDLER_ID,
        options.probe_addr,
        options.probe_port,
    )
    operator = asyncio.create_task(
        kopf.operator(
            registry=registry,
            settings=settings,
            standalone=True,
            clusterwide=True,
            stop_flag=stop,
            identity=own_identity(),
        )
    )
    companions: set[asyncio.Task[None]] = set()
    if lifecycle.when_listening is not None:
        companions.add(asyncio.create_task(_after_listening(server, lifecycle.when_listening)))
    if lifecycle.background is not None:
        companions.add(asyncio.create_task(lifecycle.background(stop)))
    if options.config_file is not None:
        reloader = ConfigReloader(
            options.config_file,
            reviewer,
            config_metrics,
            interval=options.config_check_interval,
            last_good=options.last_good,
        )
        companions.add(asyncio.create_task(reloader.run(stop)))
    failure: BaseException | None = None
    try:
        pending: set[asyncio.Task[None]] = {operator, *companions}
        while not operator.done():
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done - {operator}:
                if failure is None and not task.cancelled() and task.exception() is not None:
                    failure = task.exception()
                    logger.error("stopping: %s", failure)
                    stop.set()  # kopf stops gracefully; the failure is raised once it has
        if failure is None and login_failures:
            failure = login_failures[0]
        if failure is not None:
            raise failure
        operator.result()  # the operator's own failure, if any
    finally:
        stop.set()
        for task in (operator, *companions):
            task.cancel()
        await asyncio.gather(operator, *companions, return_exceptions=True)
        await probes.cleanup()


async def _after_listening(server: AdmissionServer, action: Callable[[], Awaitable[None]]) -> None:
    await server.listening.wait()
    await action()
