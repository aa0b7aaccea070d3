"""kopf wiring: the HTTPS admission server, probes, metrics and the operator lifecycle.

kopf owns the listener, TLS and certificate reload, API login and discovery, signals and shutdown. Its generic
admission path builds each response by deep-copying the whole pod and diffing it against the handler's edits
(about 1 ms of CPU for a 5 KB Flyte pod). Our mutation already yields the JSON Patch ops, so `AdmissionServer`
(`webhook.operator.kopfseam`, a `kopf.WebhookServer`) answers our endpoints straight from those ops; no kopf
handler is registered, and any other path is a 404.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp.web
import kopf
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from webhook.engine.config import WebhookConfig
from webhook.operator.certs import ServedCertificate
from webhook.operator.configreview import VALIDATE_CONFIG_PATH, review_config_map
from webhook.operator.kopfseam import AdmissionServer
from webhook.operator.metrics import Metrics
from webhook.operator.reload import DEFAULT_INTERVAL, ConfigMetrics, ConfigReloader, LastGood
from webhook.operator.review import PodReviewer

HANDLER_ID = "flyte-resources"
logger = logging.getLogger("flyte_resources_webhook")


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


DRAIN_SECONDS_MAX = 300


def _drain_seconds(text: str) -> int | None:
    if not (text.isascii() and text.isdigit() and len(text) <= 3) or int(text) > DRAIN_SECONDS_MAX:
        return None
    return int(text)


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

    async def drain(request: aiohttp.web.Request) -> aiohttp.web.Response:
        """The chart's preStop hook. The apiserver keeps keep-alive connections to a replica after its endpoint is
        gone, and does not retry a review whose connection the stopping server closes under it (EOF, a failed pod
        create). For `seconds`, every answer says `Connection: close`, so the apiserver retires each connection it
        still uses; then the hook returns and the kubelet sends SIGTERM."""
        seconds = _drain_seconds(request.query.get("seconds", ""))
        if seconds is None:
            return aiohttp.web.Response(status=400, text=f"seconds: a whole number from 0 to {DRAIN_SECONDS_MAX}")
        server.draining += 1
        try:
            await asyncio.sleep(seconds)
        finally:
            server.draining -= 1
        return aiohttp.web.Response(text="drained")

    async def metrics_view(_: aiohttp.web.Request) -> aiohttp.web.Response:
        body = generate_latest(metrics.registry)
        return aiohttp.web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = aiohttp.web.Application()
    app.add_routes(
        [
            aiohttp.web.get("/healthz", healthz),
            aiohttp.web.get("/readyz", readyz),
            aiohttp.web.get("/metrics", metrics_view),
            aiohttp.web.get("/drain", drain),
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
