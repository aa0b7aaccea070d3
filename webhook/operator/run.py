"""`run`: one lifecycle for the three modes. The mode says what runs around the server (`Lifecycle`), `serve`
runs all of it: certificates from files (cert-manager or any issuer), self-managed certificates kept in a Secret,
or `--dev` (a fresh CA and a MutatingWebhookConfiguration pointing at this process by URL).
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections.abc import Coroutine
from dataclasses import dataclass, fields
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from webhook.engine.config import ConfigError, WebhookConfig

# The CLI imports this module for its flags' defaults and errors: kopf, kubernetes and the server load only when
# `run` runs.
if TYPE_CHECKING:
    from webhook.operator.reload import LastGood
    from webhook.operator.selfmanaged import SelfManagedSettings
    from webhook.operator.server import Lifecycle, ServerOptions

DEFAULT_CERT_DIR = Path("/etc/flyte-resources-webhook/certs")
DEV_WEBHOOK_CONFIG_NAME = "flyte-resources-webhook-dev"
logger = logging.getLogger("flyte_resources_webhook")


class SetupError(Exception):
    """The command line or its files cannot work (TLS files missing, flags missing); exit code 2."""


class RunFailed(Exception):
    """`run` stopped because a part of it failed (login, certificates, dev registration); exit code 1."""


@dataclass(frozen=True)
class RunSettings:
    """What `run` was asked for: the command line's values, one field per flag (`--cert-dir` is `cert_dir`)."""

    config: str | None
    addr: str
    port: int
    probe_addr: str
    probe_port: int
    cert_dir: str | None
    cert_file: str | None
    key_file: str | None
    ca_file: str | None
    cert_mode: str
    cert_secret: str | None
    webhook_config_name: str | None
    service_name: str | None
    config_check_interval: float
    last_good_config: str | None
    cert_check_interval: float
    cert_validity: float
    cert_renew_before: float
    namespace: str | None
    dev: bool
    dev_host: str
    failure_policy: str
    log_format: str
    log_level: str

    @classmethod
    def of(cls, values: Any) -> RunSettings:
        """From any object with these attributes (an `argparse.Namespace`)."""
        return cls(**{f.name: getattr(values, f.name) for f in fields(cls)})


def run(settings: RunSettings) -> int:
    """Serve until stopped; 0 when stopped by a signal, 2 for a config refused at start. Raises SetupError or
    RunFailed with one line for the user."""
    import kopf

    from webhook.operator.kubeapi import KubeApiError
    from webhook.operator.reload import LastGood, start_config
    from webhook.operator.server import serve

    configure_logging(settings.log_level, settings.log_format)
    last_good = LastGood(Path(settings.last_good_config)) if settings.last_good_config else None
    try:
        config = start_config(Path(settings.config) if settings.config else None, None, last_good)
    except ConfigError as exc:
        # Through the logger, so that `--log-format json` gets JSON; one line, no stack trace.
        logger.error("%s", exc)
        return 2
    cert_dir = _cert_dir(settings)
    options = server_options(settings, cert_dir, last_good)
    lifecycle = _lifecycle(settings, config, options, cert_dir)
    try:
        run_loop(serve(config, options, lifecycle=lifecycle))
    except kopf.LoginError as exc:
        raise RunFailed(
            f"cannot log in to the Kubernetes API ({exc}); set KUBECONFIG, or run in a pod with a ServiceAccount"
        ) from None
    except KubeApiError as exc:
        raise RunFailed(str(exc)) from None
    return 0


def _cert_dir(settings: RunSettings) -> Path:
    if settings.cert_dir:
        return Path(settings.cert_dir)
    return Path(tempfile.mkdtemp(prefix="frw-dev-certs-")) if settings.dev else DEFAULT_CERT_DIR


def server_options(settings: RunSettings, cert_dir: Path, last_good: LastGood | None) -> ServerOptions:
    from webhook.operator.server import ServerOptions

    return ServerOptions(
        addr=settings.addr,
        port=settings.port,
        probe_addr=settings.probe_addr,
        probe_port=settings.probe_port,
        cert_file=Path(settings.cert_file) if settings.cert_file else cert_dir / "tls.crt",
        key_file=Path(settings.key_file) if settings.key_file else cert_dir / "tls.key",
        ca_file=Path(settings.ca_file) if settings.ca_file else cert_dir / "ca.crt",
        config_file=Path(settings.config) if settings.config else None,
        config_check_interval=settings.config_check_interval,
        last_good=last_good,
    )


def _lifecycle(settings: RunSettings, config: WebhookConfig, options: ServerOptions, cert_dir: Path) -> Lifecycle:
    if settings.dev:
        return dev_mode(settings, config, cert_dir)
    if settings.cert_mode == "self-managed":
        return self_managed_mode(settings, options, cert_dir)
    return files_mode(options)


def configure_logging(log_level: str, log_format: str) -> None:
    import kopf

    from webhook.operator import logsafe

    level = getattr(logging, log_level.upper())
    formats = {"plain": kopf.LogFormat.PLAIN, "full": kopf.LogFormat.FULL, "json": kopf.LogFormat.JSON}
    kopf.configure(debug=level <= logging.DEBUG, quiet=level >= logging.WARNING, log_format=formats[log_format])
    logging.getLogger().setLevel(level)
    logsafe.install()
    # One access-log line per review costs ~15% of throughput and duplicates our own log line.
    logging.getLogger("aiohttp.access").setLevel(max(level, logging.WARNING))


def files_mode(options: ServerOptions) -> Lifecycle:
    """Certificates from files (cert-manager, or any other issuer): they must exist; kopf reloads them."""
    from webhook.operator.server import Lifecycle

    missing = [str(p) for p in (options.cert_file, options.key_file) if p and not p.exists()]
    if missing:
        raise SetupError(
            f"TLS files not found: {', '.join(missing)} (pass --cert-file/--key-file or --cert-dir, "
            "use --cert-mode self-managed in a cluster, or --dev locally)"
        )
    return Lifecycle()


def dev_mode(settings: RunSettings, config: WebhookConfig, cert_dir: Path) -> Lifecycle:
    """A fresh CA and certificate for 127.0.0.1, and a MutatingWebhookConfiguration pointing at us by URL.

    The registration is awaited: if it fails, `run` stops with its message instead of serving a webhook nobody
    calls. The configuration is removed on every exit (signal, failure), because a `Fail` webhook pointing at
    a stopped process would block every annotated pod.
    """
    from webhook.operator import devmode
    from webhook.operator.certs import generate_bundle, write_bundle
    from webhook.operator.server import HANDLER_ID, Lifecycle

    bundle = generate_bundle(ip_addresses=["127.0.0.1"], dns_names=["localhost"])
    write_bundle(bundle, cert_dir)
    name = settings.webhook_config_name or DEV_WEBHOOK_CONFIG_NAME
    url = f"https://{settings.dev_host}:{settings.port}/{HANDLER_ID}"
    registration: list[asyncio.Future[None]] = []

    def register() -> None:
        devmode.register_dev_webhook(
            name=name,
            url=url,
            ca_pem=bundle.ca_pem,
            annotation_prefix=config.annotation_prefix,
            failure_policy=settings.failure_policy,
            flyte_task_pods=config.flyte_task_pods,
            namespace_template=config.namespace_template,
        )

    async def when_listening() -> None:
        registration.append(asyncio.get_running_loop().run_in_executor(None, register))
        await asyncio.shield(registration[0])

    async def cleanup() -> None:
        if not registration:
            return
        # A registration still in flight (a signal came during it) would land after the removal: let it finish.
        await asyncio.gather(registration[0], return_exceptions=True)
        await asyncio.to_thread(devmode.unregister_dev_webhook, name=name)

    return Lifecycle(when_listening=when_listening, cleanup=cleanup)


def self_managed_mode(settings: RunSettings, options: ServerOptions, cert_dir: Path) -> Lifecycle:
    """Certificates kept in a Secret: issued (or adopted) before serving, then checked and rotated alongside."""
    from webhook.operator.selfmanaged import ensure_certificates, rotate_forever
    from webhook.operator.server import Lifecycle

    flags = ("cert_secret", "webhook_config_name", "service_name", "namespace")
    missing = [flag for flag in flags if not getattr(settings, flag)]
    if missing:
        raise SetupError("--cert-mode self-managed needs " + ", ".join("--" + m.replace("_", "-") for m in missing))
    try:
        managed = _self_managed_settings(settings, cert_dir)
    except ValueError as exc:  # e.g. --cert-renew-before not shorter than --cert-validity
        raise SetupError(str(exc)) from None
    options.served = managed.served

    async def prepare() -> None:
        await ensure_certificates(managed)

    async def background(stop: asyncio.Event) -> None:
        await rotate_forever(managed, stop)

    return Lifecycle(prepare=prepare, background=background)


def _self_managed_settings(settings: RunSettings, cert_dir: Path) -> SelfManagedSettings:
    from webhook.operator.certs import ServedCertificate
    from webhook.operator.selfmanaged import SelfManagedSettings

    return SelfManagedSettings(
        secret_name=settings.cert_secret or "",
        namespace=settings.namespace or "",
        webhook_config_name=settings.webhook_config_name or "",
        service_name=settings.service_name or "",
        cert_dir=cert_dir,
        check_interval=settings.cert_check_interval,
        validity=timedelta(seconds=settings.cert_validity),
        renew_before=timedelta(seconds=settings.cert_renew_before),
        served=ServedCertificate(cert_file=cert_dir / "tls.crt", ca_file=cert_dir / "ca.crt"),
    )


def run_loop(main: Coroutine[Any, Any, Any]) -> Any:
    """Run on uvloop, as `kopf run` does when it is installed: its C TLS transport halves the cost of a review."""
    import uvloop

    return uvloop.run(main)
