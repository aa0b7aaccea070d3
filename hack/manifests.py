"""Render manifests/ (plain YAML for `kubectl apply` users) from the Helm chart, or check it is in sync.

    python -m hack.manifests --write   # make manifests
    python -m hack.manifests --check   # make check-manifests: exit 1 with a unified diff when out of sync

Each variant is `helm template` of charts/flyte-resources-webhook with the release name and namespace
`flyte-resources-webhook`, without the `helm test` resources, preceded by the Namespace object.
helm comes from $FRW_BIN_DIR (`make control-plane` provides it).
"""

from __future__ import annotations

import argparse
import difflib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
CHART_DIR = REPO_ROOT / "charts" / "flyte-resources-webhook"
MANIFESTS_DIR = REPO_ROOT / "manifests"
RELEASE_NAME = "flyte-resources-webhook"
NAMESPACE = "flyte-resources-webhook"
K8S_VERSION = os.environ.get("K8S_VERSION", "1.36.3")
MAX_DIFF_LINES = 200


@dataclass(frozen=True)
class Variant:
    filename: str
    title: str
    set_values: tuple[str, ...]


VARIANTS = (
    Variant(
        "flyte-resources-webhook.yaml",
        "self-managed certificates (no dependency)",
        ("certificates.mode=self-managed",),
    ),
    Variant(
        "flyte-resources-webhook-cert-manager.yaml",
        "certificates from cert-manager (install cert-manager first)",
        ("certificates.mode=cert-manager",),
    ),
)


class ManifestError(RuntimeError):
    pass


def bin_dir() -> Path:
    if os.environ.get("FRW_BIN_DIR"):
        return Path(os.environ["FRW_BIN_DIR"]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "flyte-resources-webhook" / f"k8s-v{K8S_VERSION}"


def helm_binary() -> Path:
    helm = bin_dir() / "helm"
    if not os.access(helm, os.X_OK):
        raise ManifestError(f"helm not found at {helm}; run `make control-plane` (or set FRW_BIN_DIR)")
    return helm


def render(variant: Variant) -> str:
    cmd = [
        str(helm_binary()),
        "template",
        RELEASE_NAME,
        str(CHART_DIR),
        "--namespace",
        NAMESPACE,
        "--skip-tests",
        "--set",
        "tests.enabled=false",  # the helm test pod's ServiceAccount and Role are release objects, not hooks
    ]
    for value in variant.set_values:
        cmd += ["--set", value]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ManifestError(f"{' '.join(cmd)} failed:\n{proc.stderr.strip()}")
    header = (
        f"# flyte-resources-webhook: {variant.title}.\n"
        f"# Generated from charts/flyte-resources-webhook by `make manifests`; do not edit by hand.\n"
        f"# kubectl apply --server-side -f manifests/{variant.filename}\n"
        "---\n"
        "apiVersion: v1\n"
        "kind: Namespace\n"
        "metadata:\n"
        f"  name: {NAMESPACE}\n"
        "  labels:\n"
        f"    app.kubernetes.io/name: {RELEASE_NAME}\n"
        "    pod-security.kubernetes.io/enforce: restricted\n"
    )
    body = proc.stdout.lstrip("\n")
    if not body.startswith("---"):
        body = "---\n" + body
    return header + body.rstrip("\n") + "\n"


def expected() -> dict[str, str]:
    return {variant.filename: render(variant) for variant in VARIANTS}


def write() -> list[Path]:
    MANIFESTS_DIR.mkdir(exist_ok=True)
    written = []
    wanted = expected()
    for name, text in wanted.items():
        path = MANIFESTS_DIR / name
        path.write_text(text)
        written.append(path)
    for stale in sorted(MANIFESTS_DIR.glob("*.yaml")):
        if stale.name not in wanted:
            stale.unlink()
    return written


def check() -> list[str]:
    """Problems found (empty when manifests/ matches the chart); each problem carries its diff."""
    problems = []
    wanted = expected()
    for name, text in wanted.items():
        path = MANIFESTS_DIR / name
        if not path.exists():
            problems.append(f"manifests/{name} is missing")
            continue
        actual = path.read_text()
        if actual != text:
            diff = list(
                difflib.unified_diff(
                    actual.splitlines(keepends=True),
                    text.splitlines(keepends=True),
                    fromfile=f"manifests/{name}",
                    tofile=f"manifests/{name} (rendered from the chart)",
                )
            )
            if len(diff) > MAX_DIFF_LINES:
                diff = [*diff[:MAX_DIFF_LINES], f"... ({len(diff) - MAX_DIFF_LINES} more diff lines)\n"]
            problems.append(f"manifests/{name} is out of sync with the chart:\n{''.join(diff)}")
    if MANIFESTS_DIR.exists():
        for extra in sorted(MANIFESTS_DIR.glob("*.yaml")):
            if extra.name not in wanted:
                problems.append(f"manifests/{extra.name} is not generated from the chart")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hack.manifests", description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="render manifests/ from the chart")
    mode.add_argument("--check", action="store_true", help="exit 1 with a diff when manifests/ is out of sync")
    args = parser.parse_args(argv)
    try:
        if args.write:
            for path in write():
                print(f"wrote {path.relative_to(REPO_ROOT)}")
            return 0
        problems = check()
    except ManifestError as exc:
        print(f"manifests: error: {exc}", file=sys.stderr)
        return 2
    if problems:
        print("\n".join(problems), file=sys.stderr)
        print("manifests: run `make manifests` and commit the result", file=sys.stderr)
        return 1
    print("manifests/ is in sync with the chart")
    return 0


if __name__ == "__main__":
    sys.exit(main())
