"""`flyte-resources-webhook`: run the admission webhook, or apply it to pod files offline (mutate, explain)."""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import os
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

import yaml

from webhook import __version__
from webhook.engine.config import DEFAULT_ANNOTATION_PREFIX, ConfigError
from webhook.mutation.decision import Denied, Outcome
from webhook.mutation.plan import Plan, plan_mutation
from webhook.operator.run import DEFAULT_CERT_DIR, RunFailed, RunSettings, SetupError, run
from webhook.operator.settings import load_config

PROG = "flyte-resources-webhook"


class UsageError(Exception):
    """A problem with the command line or its files; printed as one line, exit code 2."""


# --- offline: mutate / explain --------------------------------------------------------------------------------


def _read_documents(source: str) -> list[Any]:
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text()
    except OSError as exc:
        raise UsageError(f"cannot read {source}: {exc.strerror}") from None
    try:
        return [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as exc:
        raise UsageError(f"{source} is not valid YAML: {exc}") from None


def _pods(documents: list[Any], source: str) -> list[tuple[list[Any], int, dict[str, Any]]]:
    """Every Pod in the documents, as (containing list, index, pod) so results can be put back in place."""
    pods = list(_find_pods(documents, source))
    if not pods:
        kinds = sorted({str(d.get("kind")) for d in documents if isinstance(d, dict)}) or ["nothing"]
        raise UsageError(
            f"{source}: no Pod to mutate (found {', '.join(kinds)}); the webhook acts on Pods, so pass one, "
            "e.g. `kubectl get pod NAME -o yaml`"
        )
    return pods


def _find_pods(documents: list[Any], source: str) -> Iterator[tuple[list[Any], int, dict[str, Any]]]:
    for index, doc in enumerate(documents):
        if not isinstance(doc, dict):
            raise UsageError(f"{source}: document {index + 1} is not a Kubernetes object")
        if doc.get("kind") == "List" or (doc.get("kind", "").endswith("List") and "items" in doc):
            for item_index, item in enumerate(doc.get("items") or []):
                if isinstance(item, dict) and item.get("kind") == "Pod":
                    yield doc["items"], item_index, item
        elif doc.get("kind") == "Pod":
            yield documents, index, doc


def _name(pod: dict[str, Any]) -> str:
    meta = pod.get("metadata") or {}
    return f"{meta.get('namespace', 'default')}/{meta.get('name') or meta.get('generateName', '') + '*'}"


def cmd_mutate(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    documents = _read_documents(args.filename)
    denied = False
    patches: list[dict[str, Any]] = []
    for container, index, pod in _pods(documents, args.filename):
        try:
            plan = plan_mutation(pod, config)
        except Denied as exc:
            print(
                f"Denied: the webhook would deny pod {_name(pod)}: {exc.message}",
                file=sys.stderr,
            )
            denied = True
            continue
        for warning in plan.warnings:
            print(f"Warning: {_name(pod)}: {warning}", file=sys.stderr)
        container[index] = copy.deepcopy(plan.pod)
        patches.append({"pod": _name(pod), "patch": plan.ops})
    if args.output == "patch":
        json.dump(patches if len(patches) != 1 else patches[0]["patch"], sys.stdout, indent=2)
        print()
    elif args.output == "json":
        json.dump(documents if len(documents) != 1 else documents[0], sys.stdout, indent=2)
        print()
    else:
        yaml.safe_dump_all(documents, sys.stdout, sort_keys=False)
    return 1 if denied else 0


def _table(rows: Sequence[Sequence[str]], out: TextIO) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)] + [row[-1]]
        print("  ".join(cells).rstrip(), file=out)


def _explain_plan(pod: dict[str, Any], plan: Plan, out: TextIO) -> None:
    where = ", ".join(
        part
        for part in (plan.container and f"container {plan.container}", plan.policy and f"policy {plan.policy}")
        if part
    )
    where = f" ({where})" if where else ""
    print(f"pod {_name(pod)}{where}: {plan.outcome}, {len(plan.ops)} patch op(s)", file=out)
    if not plan.steps and plan.outcome is Outcome.ALLOWED:
        print("  no annotation of ours: admitted untouched", file=out)
        return
    rows = [["ANNOTATION", "VALUE", "EFFECT"]]
    for step in plan.steps:
        notes = step.changes + step.notes or ("nothing to change: the pod already has it",)
        for i, note in enumerate(notes):
            value = step.value if len(step.value) <= 40 else step.value[:37] + "..."
            rows.append([step.annotation if i == 0 else "", value if i == 0 else "", note])
    for warning in plan.warnings if plan.outcome is Outcome.IGNORED else ():
        rows.append(["", "", warning])
    _table(rows, out)


def cmd_explain(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    documents = _read_documents(args.filename)
    denied = False
    for n, (_, _, pod) in enumerate(_pods(documents, args.filename)):
        if n:
            print(file=sys.stdout)
        try:
            plan = plan_mutation(pod, config)
        except Denied as exc:
            print(f"pod {_name(pod)}: {Outcome.DENIED}\n  {exc.message}", file=sys.stdout)
            denied = True
            continue
        _explain_plan(pod, plan, sys.stdout)
    return 1 if denied else 0


# --- offline: annotate ----------------------------------------------------------------------------------------

ANNOTATE_EXAMPLES = f"""examples:
  {PROG} annotate --cpu 2:4 --memory 8Gi --gpu A100:2 --shm auto
  {PROG} annotate --gpu H100:1 --partition 1g.10gb -o json
  {PROG} annotate --gpu V6E --partition 2x4            # a TPU v6e 2x4 slice
  {PROG} annotate --cpu 1 --accelerator A100.partition_1g_5gb --shared-memory true -o flags
  pyflyte run $({PROG} annotate --gpu T4:1 -o flags) workflows.py wf

Flyte 2 spellings (--cpu, --memory, --gpu, --disk, --shm) go into one `resources` annotation; --accelerator and
--shared-memory are the flytekit-style annotations. The values are checked as the webhook checks them, so the
webhook never denies what this prints (a pod can still be denied for what they meet in it: a missing container,
a platform limit under on-limit-exceeded: reject). -o flags prints `--annotations key=value` for `pyflyte run`.
"""


def _pair(text: str | None) -> str | tuple[str, str] | None:
    if text is None:
        return None
    request, colon, limit = text.partition(":")
    return (request, limit) if colon else text


def _gpu(gpu: str | None, partition: str | None, device_class: str | None) -> Any:
    """--gpu as given, or with --partition / --device-class the engine's Flyte 2 device: a type with a count
    (`H100:1`) is read by the engine's parser, a bare type (`V6E`) is a device name."""
    from webhook.engine.flyte2 import device, parse_accelerator

    if not (partition or device_class):
        return gpu
    if gpu is None or not gpu.strip()[:1].isalpha():
        raise ValueError("--partition and --device-class need --gpu with a type, e.g. --gpu H100:1")
    parsed = parse_accelerator(gpu) if ":" in gpu else None
    name, quantity = (parsed.device or gpu, parsed.quantity) if parsed else (gpu.strip(), None)
    return device(name, quantity, partition, device_class)


def cmd_annotate(args: argparse.Namespace) -> int:
    from webhook.mutation.builder import flyte2_annotations

    try:
        gpu = _gpu(args.gpu, args.partition, args.device_class)
        shared_memory: bool | str | None = args.shared_memory
        if isinstance(shared_memory, str) and shared_memory.lower() in ("true", "false"):
            shared_memory = shared_memory.lower() == "true"
        result = flyte2_annotations(
            cpu=_pair(args.cpu),
            memory=_pair(args.memory),
            gpu=gpu,
            disk=args.disk,
            shm=args.shm,
            accelerator=args.accelerator,
            shared_memory=shared_memory,
            container=args.container,
            gpu_resource_key=args.gpu_resource_key,
            prefix=args.prefix,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if not result:
        raise UsageError("nothing to annotate: give at least one of --cpu, --memory, --gpu, --disk, --shm, ...")
    if args.output == "json":
        print(json.dumps(result, indent=2))
    elif args.output == "flags":
        import shlex

        print(" ".join(f"--annotations {shlex.quote(f'{key}={value}')}" for key, value in result.items()))
    else:
        print(yaml.safe_dump(result, sort_keys=False, width=1000), end="")
    return 0


def _add_annotate_parser(sub: Any, fmt: type[argparse.HelpFormatter]) -> None:
    annotate = sub.add_parser(
        "annotate",
        help="print the annotations for given resources (Flyte 2 or flytekit spellings), checked like the webhook",
        epilog=ANNOTATE_EXAMPLES,
        formatter_class=fmt,
    )
    annotate.add_argument("--cpu", help="cores or a quantity; request:limit for a pair (2:4)")
    annotate.add_argument("--memory", help="a quantity; request:limit for a pair (4Gi:8Gi)")
    annotate.add_argument("--gpu", help="a count (2) or a Flyte 2 type and count (A100:2, H100:8, Trn1:16)")
    annotate.add_argument("--partition", help="with --gpu: a MIG profile (1g.10gb) or TPU slice (2x4)")
    annotate.add_argument("--device-class", help="with --gpu: GPU, TPU, NEURON, AMD_GPU or HABANA_GAUDI")
    annotate.add_argument("--disk", help="ephemeral storage, a quantity")
    annotate.add_argument("--shm", help="/dev/shm: a size (16Gi) or auto")
    annotate.add_argument("--accelerator", help="a flytekit name (A100.partition_1g_5gb) or a device string")
    annotate.add_argument("--shared-memory", help="flytekit's shared_memory: true or a size")
    annotate.add_argument("--container", help="the target container")
    annotate.add_argument("--gpu-resource-key", help="an extended resource name instead of gpu-resource-name")
    annotate.add_argument(
        "--prefix", default=DEFAULT_ANNOTATION_PREFIX, help="annotation prefix (default: %(default)s)"
    )
    annotate.add_argument(
        "-o", "--output", choices=["yaml", "json", "flags"], default="yaml", help="(default: %(default)s)"
    )
    annotate.set_defaults(func=cmd_annotate)


# --- validate-config ------------------------------------------------------------------------------------------


def cmd_validate_config(args: argparse.Namespace) -> int:
    """Each file checked as a replica (and the chart's edit-time check) would: exit 1 when any is refused."""
    from webhook.operator.configreview import validate_config_text
    from webhook.operator.reload import config_hash

    refused = 0
    for name in args.files:
        try:
            text = sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
            config = validate_config_text(text, name)
        except (OSError, UnicodeDecodeError) as exc:
            print(f"{name}: cannot read: {exc}", file=sys.stderr)
            refused += 1
        except ConfigError as exc:
            print(str(exc) if name in str(exc) else f"{name}: {exc}", file=sys.stderr)
            refused += 1
        else:
            print(
                f"{name}: valid (hash {config_hash(config)}, preset {config.preset}, {len(config.policies)} policies)"
            )
    return 1 if refused else 0


# --- run ------------------------------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    """The operator's `run` (`webhook.operator.run`, which loads kopf only now)."""
    return run(RunSettings.of(args))


# --- parser ---------------------------------------------------------------------------------------------------

RUN_EXAMPLES = f"""examples:
  # in a cluster (what the Helm chart runs), certificates from cert-manager in --cert-dir
  {PROG} run --config /etc/flyte-resources-webhook/config/config.yaml --cert-dir /etc/flyte-resources-webhook/certs

  # against the cluster of $KUBECONFIG for debugging: self-signed certificates, and a
  # MutatingWebhookConfiguration pointing at https://127.0.0.1:9443/flyte-resources
  {PROG} run --dev --addr 127.0.0.1

configuration: --config YAML with the keys listed in the README; FRW_<KEY> environment variables override
single keys, e.g. FRW_ON_INVALID=ignore or FRW_PLATFORM_LIMITS='{{cpu: "8", memory: 64Gi}}'.

exit status: 0 once stopped by SIGTERM/SIGINT; 1 when a part fails (no API login, self-managed certificates,
the --dev registration), with one line saying why; 2 for a bad command line, config or TLS files. --dev removes
its MutatingWebhookConfiguration on every exit.
"""

MUTATE_EXAMPLES = f"""examples:
  {PROG} mutate -f examples/gpu-a100-mig.yaml
  {PROG} mutate -f pod.yaml -o patch --config config.yaml
  kubectl get pod my-task -o yaml | {PROG} mutate -f -

The mutated pods go to stdout, the warnings to stderr. Exit status 1 if any pod would be denied.
"""

EXPLAIN_EXAMPLES = f"""examples:
  {PROG} explain -f examples/flyte-task-resources.yaml
  {PROG} explain -f pods.yaml --config config.yaml
"""


def _seconds(text: str) -> float:
    """A positive, finite number of seconds (NaN and inf parse as floats but make no interval)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(text: str) -> float:
    """A positive duration in seconds: `8760h`, `30d`, `1h30m`, or a plain number of seconds."""
    parts = re.fullmatch(r"(?:\d+(?:\.\d+)?[smhd])+", text.strip())
    if parts is None:
        return _seconds(text)
    value = sum(float(n) * _DURATION_UNITS[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)([smhd])", text))
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive duration")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Flyte task resources, accelerators and shared memory applied to pods at admission, "
        f"from {DEFAULT_ANNOTATION_PREFIX}* annotations.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    fmt = argparse.RawDescriptionHelpFormatter
    run = sub.add_parser("run", help="serve the mutating admission webhook", epilog=RUN_EXAMPLES, formatter_class=fmt)
    _add_serving_arguments(run)
    _add_certificate_arguments(run)
    _add_dev_and_log_arguments(run)
    run.set_defaults(func=cmd_run)
    _add_offline_parsers(sub, fmt)
    _add_annotate_parser(sub, fmt)
    _add_validate_parser(sub)
    return parser


def _add_serving_arguments(run: argparse.ArgumentParser) -> None:
    run.add_argument(
        "--config", default=os.environ.get("FRW_CONFIG_FILE"), help="YAML config file (env FRW_CONFIG_FILE)"
    )
    run.add_argument("--addr", default="0.0.0.0", help="HTTPS listen address (default: %(default)s)")
    run.add_argument("--port", type=int, default=9443, help="HTTPS listen port (default: %(default)s)")
    run.add_argument("--probe-addr", default="0.0.0.0", help="address of /healthz, /readyz, /metrics")
    run.add_argument(
        "--probe-port", type=int, default=8080, help="port of /healthz, /readyz, /metrics (default: %(default)s)"
    )
    run.add_argument(
        "--config-check-interval",
        type=_seconds,
        default=2.0,
        metavar="SECONDS",
        help="seconds between looks at --config for a live reload: a valid new version serves the next review, an "
        "invalid one is refused and logged (default: %(default)s)",
    )
    run.add_argument(
        "--last-good-config",
        metavar="PATH",
        help="keep each config served in PATH and start from it when the config file is refused at a restart "
        "(the chart: a file in the pod's /tmp emptyDir)",
    )


def _add_certificate_arguments(run: argparse.ArgumentParser) -> None:
    run.add_argument("--cert-dir", help=f"directory with tls.crt, tls.key, ca.crt (default: {DEFAULT_CERT_DIR})")
    run.add_argument("--cert-file", help="serving certificate (default: CERT_DIR/tls.crt); reloaded when it changes")
    run.add_argument("--key-file", help="serving key (default: CERT_DIR/tls.key)")
    run.add_argument("--ca-file", help="CA bundle (default: CERT_DIR/ca.crt)")
    run.add_argument(
        "--cert-mode",
        choices=["files", "self-managed"],
        default="files",
        help="files: read TLS files (cert-manager); self-managed: keep a CA and serving certificate "
        "in a Secret, rotate them and patch the caBundle (default: %(default)s)",
    )
    run.add_argument("--cert-secret", help="self-managed: Secret holding the certificates")
    run.add_argument("--webhook-config-name", help="self-managed / --dev: MutatingWebhookConfiguration name")
    run.add_argument("--service-name", help="self-managed: the webhook's Service name (certificate DNS names)")
    _add_certificate_timing_arguments(run)
    run.add_argument(
        "--namespace", default=os.environ.get("POD_NAMESPACE"), help="self-managed: namespace (env POD_NAMESPACE)"
    )


def _add_certificate_timing_arguments(run: argparse.ArgumentParser) -> None:
    run.add_argument(
        "--cert-check-interval",
        type=_seconds,
        default=30.0,
        metavar="SECONDS",
        help="self-managed: seconds between re-reads of the Secret and the webhook configuration's caBundle "
        "(default: %(default)s)",
    )
    run.add_argument(
        "--cert-validity",
        type=_duration,
        default=365 * 86400.0,
        metavar="DURATION",
        help="self-managed: validity of the serving certificates it issues, e.g. 8760h or 30d (default: 365d)",
    )
    run.add_argument(
        "--cert-renew-before",
        type=_duration,
        default=30 * 86400.0,
        metavar="DURATION",
        help="self-managed: renew the serving certificate (and the CA) this long before it expires; shorter than "
        "--cert-validity (default: 30d)",
    )


def _add_dev_and_log_arguments(run: argparse.ArgumentParser) -> None:
    run.add_argument(
        "--dev",
        action="store_true",
        help="generate a CA and a certificate for 127.0.0.1 and register a MutatingWebhookConfiguration "
        "with a local URL",
    )
    run.add_argument("--dev-host", default="127.0.0.1", help="--dev: host in the registered URL (default: %(default)s)")
    run.add_argument("--failure-policy", choices=["Fail", "Ignore"], default="Fail", help="--dev: failurePolicy")
    run.add_argument(
        "--log-format", choices=["plain", "full", "json"], default="full", help="log format (default: %(default)s)"
    )
    run.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default="info")


def _add_offline_parsers(sub: Any, fmt: type[argparse.HelpFormatter]) -> None:
    mutate = sub.add_parser(
        "mutate",
        help="print pods as the webhook would admit them (no cluster needed)",
        epilog=MUTATE_EXAMPLES,
        formatter_class=fmt,
    )
    mutate.add_argument(
        "-f", "--filename", required=True, help="pod YAML/JSON file, a List, or multi-document; - for stdin"
    )
    mutate.add_argument("--config", default=os.environ.get("FRW_CONFIG_FILE"), help="YAML config file")
    mutate.add_argument(
        "-o", "--output", choices=["yaml", "json", "patch"], default="yaml", help="(default: %(default)s)"
    )
    mutate.set_defaults(func=cmd_mutate)
    explain = sub.add_parser(
        "explain",
        help="a table of what each annotation does to each pod and why",
        epilog=EXPLAIN_EXAMPLES,
        formatter_class=fmt,
    )
    explain.add_argument("-f", "--filename", required=True, help="pod file; - for stdin")
    explain.add_argument("--config", default=os.environ.get("FRW_CONFIG_FILE"), help="YAML config file")
    explain.set_defaults(func=cmd_explain)


def _add_validate_parser(sub: Any) -> None:
    validate = sub.add_parser(
        "validate-config",
        help="check config files as the webhook loads them (exit 1 when one is refused): for CI",
        description="Check each config file exactly as a replica loads it and as the chart's edit-time check of "
        "its ConfigMap does (size, no YAML anchors or aliases, not empty, every key and policy); FRW_* "
        "environment overrides are not applied. Exit 0 when all are valid, 1 when one is refused.",
    )
    validate.add_argument("files", nargs="+", metavar="FILE", help="config file; - for stdin")
    validate.set_defaults(func=cmd_validate_config)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (ConfigError, UsageError, SetupError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    except RunFailed as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1

    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the last line of defence: one clear line, the details only with --log-level debug
        if logging.getLogger().isEnabledFor(logging.DEBUG):
            raise
        print(f"{PROG}: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
