"""Loading the webhook configuration: a YAML file (the chart mounts one) plus `FRW_<KEY>` environment overrides.

The file is read as hostile input, since whoever may edit the ConfigMap can otherwise take every replica down: it
is refused above `MAX_CONFIG_BYTES` (what a ConfigMap can hold) before it is parsed, refused when it uses YAML
anchors or aliases (a file of a few hundred bytes can expand to gigabytes through nested aliases, and a config
file has no need of them), refused when it holds no document at all (an empty or truncated file would otherwise
mean "every default, no policy"), and every error message is bounded.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from webhook.engine.config import ConfigError, WebhookConfig
from webhook.engine.excerpt import bounded, shown

ENV_PREFIX = "FRW_"
MAX_CONFIG_BYTES = 1024 * 1024  # the most a ConfigMap holds
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: parsing 1 MiB takes milliseconds


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
        data.update(parse_config_text(text, str(path)))
    for key in WebhookConfig.model_fields:
        name = key.replace("_", "-")
        raw = environ.get(env_name(name))
        if raw is None:
            continue
        try:
            parsed = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise ConfigError(f"{env_name(name)}={shown(raw)} is not a valid YAML value") from None
        # Maps and lists (platform-limits, resource-tolerations) come as YAML/JSON; scalars stay as written.
        data[name] = parsed if isinstance(parsed, dict | list) else raw
    return WebhookConfig.from_mapping(data)


def parse_config_text(text: str, source: str) -> dict[str, Any]:
    """The mapping a config file holds; a `ConfigError` of at most ~1 KiB for one that is too large, uses anchors
    or aliases, is empty, is not YAML or is not a mapping."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(f"config file {source} is {size} bytes; at most {MAX_CONFIG_BYTES} (what a ConfigMap holds)")
    try:
        for event in yaml.parse(text, Loader=_LOADER):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
                line = event.start_mark.line + 1 if event.start_mark is not None else "?"
                raise ConfigError(
                    f"config file {source}: line {line}: YAML anchors and aliases are not allowed "
                    "(write each value out)"
                )
        loaded = yaml.load(text, Loader=_LOADER)
    except yaml.YAMLError as exc:
        raise ConfigError(bounded(f"config file {source} is not valid YAML: {exc}")) from None
    if loaded is None:
        raise ConfigError(
            f"config file {source} is empty: write the keys to change, or {{}} for every default "
            "(an empty or truncated file is never taken for the defaults)"
        )
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {source} must hold a mapping of config keys, not {type(loaded).__name__}")
    return loaded
