"""Live reload of the configuration file: a new version is validated, then swapped in between two reviews.

The chart mounts the config from a ConfigMap. kubelet updates such a volume atomically: it writes the new files
into a fresh timestamped directory and then renames the `..data` symlink onto it, so `config.yaml` (a symlink
through `..data`) points at the complete old file or at the complete new one, never at a half-written one, and
its inode changes with every update while the path stays. An editor or `cp` over a plain file does not swap
atomically, and a file truncated mid-write may still be valid YAML (a one-policy prefix of a longer list): a plain
file's change is read only once the file has stayed the same for a whole interval.

The watcher polls `stat()` of the path (following the symlinks) every `interval` seconds, which sees both kinds of
change, costs a few microseconds and needs no inotify (which reports changes of the symlink's target directory,
not of the path). A changed file is read once; the bytes read are the bytes validated and hashed. A valid new
configuration replaces the reviewer's in one assignment (`PodReviewer.use_config`): a review runs to its end on
the configuration it started with, and the answers remembered under the old one go with it. An invalid one is
refused: the running configuration stays, the reason is logged at ERROR, the refusal is counted, and
`flyte_resources_webhook_config_last_reload_successful` is 0: the file on disk is not the configuration served.
Reading and validating run in a worker thread, so even a 1 MiB config never holds up a review on the event loop.

`LastGood` keeps the bytes of the last configuration served where a restarted container finds them (the chart's
`/tmp` emptyDir lives as long as the pod): a replica restarted while the ConfigMap holds an invalid version keeps
serving the last good one instead of crash-looping.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
from collections.abc import Mapping
from pathlib import Path

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge

from webhook.engine.config import ConfigError, WebhookConfig
from webhook.operator.review import PodReviewer
from webhook.operator.settings import load_config

logger = logging.getLogger("flyte_resources_webhook")

RESULTS = ("applied", "unchanged", "invalid")
# Keys the MutatingWebhookConfiguration is built from: which pods reach the webhook at all.
_WEBHOOK_CONFIGURATION_KEYS = ("annotation_prefix", "flyte_task_pods")
DEFAULT_INTERVAL = 2.0


def config_hash(config: WebhookConfig) -> str:
    """A short digest of the validated configuration (file, environment overrides and preset resolved), so two
    files that differ only in comments or key order have one hash."""
    dumped = orjson.dumps(config.model_dump(mode="json", by_alias=True), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(dumped).hexdigest()[:16]


class ConfigMetrics:
    """`flyte_resources_webhook_config_reloads_total{result}`, `flyte_resources_webhook_config_info{hash}` and
    `flyte_resources_webhook_config_last_reload_successful`."""

    def __init__(self, registry: CollectorRegistry, config: WebhookConfig) -> None:
        self.reloads = Counter(
            "flyte_resources_webhook_config_reloads",
            "Changes of the config file seen, by result: " + ", ".join(RESULTS) + ".",
            ["result"],
            registry=registry,
        )
        for result in RESULTS:
            self.reloads.labels(result)  # present at zero from the start, so a refusal can alert at once
        self.info = Gauge(
            "flyte_resources_webhook_config_info",
            "The active configuration: its hash (1 on the active one's labels).",
            ["hash", "policies"],
            registry=registry,
        )
        self.last_reload_successful = Gauge(
            "flyte_resources_webhook_config_last_reload_successful",
            "0 while the config file holds a version that was refused (the previous one still serves), else 1.",
            registry=registry,
        )
        self.last_reload_successful.set(1)
        self._active: tuple[str, str] | None = None
        self.set_active(config)

    def counted(self, result: str) -> str:
        """Count one look at a changed file and return its result."""
        self.reloads.labels(result).inc()
        self.last_reload_successful.set(0 if result == "invalid" else 1)
        return result

    def set_active(self, config: WebhookConfig) -> None:
        labels = (config_hash(config), str(len(config.policies)))
        if self._active is not None and self._active != labels:
            self.info.remove(*self._active)
        self.info.labels(*labels).set(1)
        self._active = labels


def _signature(path: Path) -> tuple[int, int, int, int] | None:
    try:
        st = os.stat(path)  # follows config.yaml -> ..data/config.yaml -> ..<timestamp>/config.yaml
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


class ConfigReloader:
    """Polls the config file; `check()` is one poll (what tests call), `run()` polls until stopped."""

    def __init__(
        self,
        path: Path,
        reviewer: PodReviewer,
        metrics: ConfigMetrics,
        *,
        environ: Mapping[str, str] | None = None,
        interval: float = DEFAULT_INTERVAL,
        last_good: LastGood | None = None,
    ) -> None:
        self.path = path
        self.reviewer = reviewer
        self.metrics = metrics
        self.environ = environ
        self.interval = interval
        # Nothing seen yet: the first look reads the file, so a change between the start's load and the watcher's
        # start is not missed; a file that still holds the active configuration then counts as no change.
        self._seen: tuple[int, int, int, int] | None = None
        self._seen_bytes: bytes | None = None
        self._first = True
        self._settling: tuple[int, int, int, int] | None = None
        self.last_good = last_good

    def check(self) -> str | None:
        """Look at the file once: the result counted (`applied`, `unchanged`, `invalid`), or None if the file
        did not change since the last look."""
        signature = _signature(self.path)
        if signature == self._seen:
            return None
        if not self._first and not self.path.is_symlink() and signature != self._settling:
            self._settling = signature  # a plain file that just changed: read it once it stays so
            return None
        self._seen = signature
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            return self._refuse(f"cannot read config file {self.path}: {exc.strerror}")
        if data == self._seen_bytes:
            return None  # touched, or swapped to identical content: nothing to validate again
        self._seen_bytes = data
        try:
            config = load_config(self.path, self.environ, text=data.decode("utf-8"))
        except UnicodeDecodeError as exc:
            return self._refuse(f"config file {self.path} is not UTF-8: {exc.reason}")
        except ConfigError as exc:
            return self._refuse(str(exc))
        first, self._first = self._first, False
        self.metrics.last_reload_successful.set(1)
        if self.last_good is not None:
            self.last_good.save(data)
        if config_hash(config) == config_hash(self.reviewer.config):
            if first:
                return None
            logger.info("config file %s changed; the configuration it holds is the active one", self.path)
            return self.metrics.counted("unchanged")
        old = self.reviewer.config
        self.reviewer.use_config(config)
        self.metrics.set_active(config)
        for key in _WEBHOOK_CONFIGURATION_KEYS:
            if getattr(old, key) != getattr(config, key):
                logger.warning(
                    "config %s changed: the MutatingWebhookConfiguration's matchConditions follow it only "
                    "after `helm upgrade` (or a restart of `run --dev`)",
                    key.replace("_", "-"),
                )
        logger.info(
            "config reloaded from %s: hash %s, %d policies", self.path, config_hash(config), len(config.policies)
        )
        return self.metrics.counted("applied")

    def _refuse(self, reason: str) -> str:
        self._first = False
        logger.error(
            "config file %s refused, still serving configuration %s: %s",
            self.path,
            config_hash(self.reviewer.config),
            reason,
        )
        return self.metrics.counted("invalid")

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.interval)
            if stop.is_set():
                return
            try:
                await asyncio.to_thread(self.check)
            except Exception:  # a bug in reloading must not stop a webhook that serves a valid configuration
                logger.exception("config file %s: reload failed; still serving the active configuration", self.path)
                self.metrics.counted("invalid")


class LastGood:
    """The bytes of the last config file served, in `path` (written atomically; a failure to write is logged)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def save(self, data: bytes) -> None:
        try:
            if self.path.exists() and self.path.read_bytes() == data:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_name(self.path.name + ".tmp")
            temporary.write_bytes(data)
            os.replace(temporary, self.path)
        except OSError as exc:
            logger.warning("cannot keep the last good config in %s: %s", self.path, exc.strerror)

    def load(self) -> bytes | None:
        try:
            return self.path.read_bytes()
        except OSError:
            return None


def start_config(
    path: Path | None, environ: Mapping[str, str] | None = None, last_good: LastGood | None = None
) -> WebhookConfig:
    """The configuration to start with: the file's; else, when the file is refused and `last_good` holds a
    configuration this pod served before, that one (logged at ERROR; the reloader then counts the refusal). A
    `ConfigError` when neither is valid."""
    if path is None:
        return load_config(None, environ)
    try:
        data = path.read_bytes()
        config = load_config(path, environ, text=data.decode("utf-8"))
    except (OSError, UnicodeDecodeError, ConfigError) as exc:
        previous = last_good.load() if last_good is not None else None
        if previous is None:
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(f"cannot read config file {path}: {exc}") from None
        try:
            config = load_config(last_good.path if last_good else None, environ, text=previous.decode("utf-8"))
        except (UnicodeDecodeError, ConfigError):
            raise exc from None
        logger.error("config file %s refused, serving the last good configuration of this pod: %s", path, exc)
        return config
    if last_good is not None:
        last_good.save(data)
    return config
