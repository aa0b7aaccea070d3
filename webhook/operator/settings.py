"""Loading the webhook configuration: a YAML file (the chart mounts one) plus `FRW_<KEY>` environment overrides."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from webhook.engine.config import ConfigError, WebhookConfig

ENV_PREFIX = "FRW_"


def env_name(key: str) -> str:
    return ENV_PREFIX + key.upper().replace("-", "_")


def load_config(
    path: str | Path | None = None, environ: Mapping[str, str] | None = None, *, text: str | None = None
) -> WebhookConfig:
    """Read, merge and validate; every problem is a `ConfigError` naming the file, key and value. `text` is the
    file's content when the caller has read it already (a reload validates exactly the bytes it read)."""
    environ = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    if path:
        try:
            text = Path(path).read_text() if text is None else text
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping of config keys, not {type(loaded).__name__}")
        data.update(loaded or {})
    for key in WebhookConfig.model_fields:
        name = key.replace("_", "-")
        raw = environ.get(env_name(name))
        if raw is None:
            continue
        try:
            parsed = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise ConfigError(f"{env_name(name)}={raw!r} is not a valid YAML value") from None
        # Maps and lists (platform-limits, resource-tolerations) come as YAML/JSON; scalars stay as written.
        data[name] = parsed if isinstance(parsed, dict | list) else raw
    return WebhookConfig.from_mapping(data)
