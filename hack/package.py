"""`make package`: the chart as a versioned archive whose default image is the one you built and pushed.

    python -m hack.package [--version 0.1.0] [--image registry.example.com/frw] [--tag 0.1.0] [--destination dist]

`helm package` with `--version` (the chart's version, default: the project's) and `--app-version` (the image
tag, default: the version), from a copy of the chart whose `image.repository` default is `--image`; the chart's
image tag defaults to `appVersion`, so `helm install` of the archive pulls exactly `<image>:<tag>`. Push it with
`helm push dist/flyte-resources-webhook-<version>.tgz oci://<registry>/<path>`.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from hack import manifests

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_IMAGE = "ghcr.io/flyteorg/flyte-resources-webhook"
# The one `repository:` line of values.yaml's `image:` block (the test pod's kubectl image has its own).
_IMAGE_REPOSITORY = re.compile(r"(?m)^(image:\n(?:  #.*\n)*  repository: )(\S+)$")


def project_version() -> str:
    return str(tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"])


def package(version: str, image: str, tag: str, destination: Path, helm: str | None = None) -> Path:
    """The packaged chart's path (`<destination>/flyte-resources-webhook-<version>.tgz`)."""
    helm = helm or str(manifests.bin_dir() / "helm")
    destination.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="frw-package-") as work:
        chart = Path(work) / manifests.CHART_DIR.name
        shutil.copytree(manifests.CHART_DIR, chart, ignore=shutil.ignore_patterns("ci"))
        values = chart / "values.yaml"
        text, replaced = _IMAGE_REPOSITORY.subn(lambda m: m.group(1) + image, values.read_text())
        if replaced != 1:
            raise SystemExit(f"hack/package.py: no single image.repository line in {values}")
        values.write_text(text)
        done = subprocess.run(
            [helm, "package", str(chart), "--version", version, "--app-version", tag, "-d", str(destination)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise SystemExit(f"helm package failed:\n{done.stdout}{done.stderr}")
    return destination / f"{chart.name}-{version}.tgz"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hack.package", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", default=project_version(), help="chart version (default: the project's)")
    parser.add_argument("--image", default=DEFAULT_IMAGE, help="image repository the chart pulls by default")
    parser.add_argument("--tag", help="image tag = the chart's appVersion (default: --version)")
    parser.add_argument("--destination", type=Path, default=REPO_ROOT / "dist")
    args = parser.parse_args(argv)
    path = package(args.version, args.image, args.tag or args.version, args.destination)
    print(f"{path}: chart {args.version}, image {args.image}:{args.tag or args.version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
