"""The container images the local cluster's real node runs (`hack.cluster.node`), built here without a registry.

* the webhook, from the repository's own `Dockerfile` (what users build with `docker build .`), with
  `PYTHON_IMAGE` set to a local base: a Debian bookworm root file system from `debootstrap --variant=minbase`
  with Debian's Python 3.11 (`python3.11`, `python3.11-venv`, `python-is-python3`), imported with `docker
  import`. The build's `pip` installs from wheels built on the host (`pip wheel`), added to a copy of the build
  context, with no index. Tagged as the chart's default image (`values.yaml` `image.repository`, `Chart.yaml`
  `appVersion`).
* the pod sandbox image (`registry.k8s.io/pause:3.10`): `FROM scratch` plus the pause binary of `make node`;
* the `helm test` pod's kubectl image (`values.yaml` `tests.image`): `FROM scratch` plus the cached kubectl.

Docker is Debian's `docker.io` (installed when missing; `dockerd` started when not running, its log in the cache).
The classic builder is used (`DOCKER_BUILDKIT=0`): BuildKit would fetch the Dockerfile's `# syntax` frontend
image from a registry. Each image is saved with `docker save` to `<cache>/images/<name>-<hash of its inputs>.tar`
and rebuilt only when its inputs change; the node imports the tarballs with `ctr -n k8s.io images import`.

Run as `python -m hack.images` (`make images`); `--print` lists the tarballs without building.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from hack.cluster.chart import CHART_DIR
from hack.cluster.node import PAUSE_IMAGE
from hack.cluster.processes import REPO_ROOT, HarnessError, default_bin_dir, wait_until

CACHE_ROOT = default_bin_dir().parent
IMAGE_DIR = CACHE_ROOT / "images"
STALE_AFTER = 7 * 86400  # older tarballs of an image are removed when it is rebuilt
LAYOUT = b"saved-as-2"  # how a tarball is made (part of every hash): a change here rebuilds them all
DEBIAN_SUITE = "bookworm"
# debootstrap resolves no virtual package: python3-distutils provides the venv module's python3.11-distutils.
BASE_PACKAGES = ("python3.11", "python3.11-venv", "python3-distutils", "python-is-python3")
# What the image needs at build time, as the .dockerignore lets it in.
WEBHOOK_INPUTS = ("Dockerfile", ".dockerignore", "pyproject.toml", "README.md", "webhook")
# Trimmed from the base: apt's state and caches, documentation, translations.
BASE_TRIM = ("var/lib/apt/lists", "var/cache/apt", "usr/share/doc", "usr/share/man", "usr/share/info",
             "usr/share/locale", "usr/share/lintian")  # fmt: skip


class MissingImages(HarnessError):
    """An image tarball of the real node is not built yet."""


def chart_images() -> tuple[str, str]:
    """The webhook image and the `helm test` kubectl image as the chart's default values name them."""
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    chart = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    webhook = f"{values['image']['repository']}:{values['image']['tag'] or chart['appVersion']}"
    kubectl = f"{values['tests']['image']['repository']}:{values['tests']['image']['tag']}"
    return webhook, kubectl


def _digest(*parts: bytes) -> str:
    sha = hashlib.sha256()
    for part in parts:
        sha.update(hashlib.sha256(part).digest())
    return sha.hexdigest()[:16]


def _tree_digest(paths: tuple[str, ...]) -> str:
    parts = []
    for name in paths:
        path = REPO_ROOT / name
        files = sorted(path.rglob("*")) if path.is_dir() else [path]
        for file in files:
            if file.is_file() and "__pycache__" not in file.parts and file.suffix != ".pyc":
                parts += [str(file.relative_to(REPO_ROOT)).encode(), file.read_bytes()]
    return _digest(*parts)


@dataclass(frozen=True)
class Image:
    name: str  # the file name stem
    tag: str  # the reference pods name
    inputs: str  # hash of what it is built from

    @property
    def tarball(self) -> Path:
        return IMAGE_DIR / f"{self.name}-{self.inputs}.tar"

    @property
    def saved_as(self) -> str:
        """The tag it is built and saved under: worktrees building different sources at once never share a tag
        in Docker. The node tags it back to `tag` after the import."""
        return f"{self.tag}-frw-{self.inputs}"


def base_tag() -> str:
    return f"frw-python:3.11-{DEBIAN_SUITE}-{_digest(' '.join(BASE_PACKAGES).encode(), repr(BASE_TRIM).encode())}"


def images() -> list[Image]:
    """The node's images, named by what they are built from (nothing is built or read from Docker here)."""
    bins = default_bin_dir()
    webhook, kubectl = chart_images()

    def file_digest(path: Path) -> str:
        if not path.is_file():
            raise MissingImages(f"{path} is missing: run `make node` first")
        return _digest(LAYOUT, path.read_bytes())

    return [
        Image("webhook", webhook, _digest(LAYOUT, base_tag().encode(), _tree_digest(WEBHOOK_INPUTS).encode())),
        Image("pause", PAUSE_IMAGE, file_digest(bins / "pause")),
        Image("kubectl", kubectl, file_digest(bins / "kubectl")),
    ]


def tarballs() -> dict[str, tuple[Path, str]]:
    """Image reference -> (tarball, the reference inside it), for the node to import; fails naming what is
    missing."""
    found = {image.tag: (image.tarball, image.saved_as) for image in images()}
    missing = [str(path) for path, _ in found.values() if not path.is_file()]
    if missing:
        raise MissingImages(f"image tarballs missing: {', '.join(missing)}: run `make images`")
    return found


# --------------------------------------------------------------------------------------------- docker


def say(message: str) -> None:
    print(f"==> {message}", file=sys.stderr, flush=True)


def docker_cli() -> str:
    # Debian's client matches Debian's daemon; a newer static client may sit earlier on PATH.
    return "/usr/bin/docker" if os.access("/usr/bin/docker", os.X_OK) else "docker"


def docker(*args: str, stdin: bytes | None = None, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}
    result = subprocess.run([docker_cli(), *args], input=stdin, capture_output=True, env=env, check=False)
    if check and result.returncode != 0:
        raise HarnessError(f"docker {' '.join(args[:3])} ... failed: {result.stderr.decode(errors='replace')[-2000:]}")
    return result


def apt_install(*packages: str) -> None:
    say(f"installing {' '.join(packages)} from Debian")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True)
    subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", *packages], check=True, stdout=subprocess.DEVNULL)


def ensure_docker() -> None:
    if shutil.which("dockerd") is None:
        apt_install("docker.io")
    if docker("info", check=False).returncode == 0:
        return
    log = CACHE_ROOT / "dockerd.log"
    say(f"starting dockerd (log: {log})")
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        subprocess.Popen(["dockerd"], stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                         start_new_session=True)  # fmt: skip
    wait_until(lambda: docker("info", check=False).returncode == 0, timeout=60, what="dockerd to answer", interval=0.5)


def has_image(tag: str) -> bool:
    return docker("image", "inspect", tag, check=False).returncode == 0


def build_base(tag: str) -> None:
    """Debian bookworm (minbase) with Debian's Python 3.11, as a Docker image."""
    if shutil.which("debootstrap") is None:
        apt_install("debootstrap")
    mirror = "http://deb.debian.org/debian"
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.is_file():
        mirror = next(
            (line.split()[1] for line in sources.read_text().splitlines() if line.startswith("URIs:")), mirror
        )
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="frw-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        say(f"base image {tag}: debootstrap --variant=minbase {DEBIAN_SUITE} + {' '.join(BASE_PACKAGES)} (1-3 min)")
        subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}", DEBIAN_SUITE, str(rootfs),
             mirror], check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        for path in BASE_TRIM:
            shutil.rmtree(rootfs / path, ignore_errors=True)
        tar = subprocess.run(
            ["tar", "-C", str(rootfs), "--numeric-owner", "--exclude=./dev/*", "--exclude=./proc/*",
             "--exclude=./sys/*", "-c", "."], check=True, capture_output=True,
        ).stdout  # fmt: skip
    docker("import", "--change", 'CMD ["python3"]', "--change", "ENV LANG=C.UTF-8", "-", tag, stdin=tar)
    say(f"base image {tag}: {time.monotonic() - start:.0f} s")


def build_webhook(image: Image, base: str) -> None:
    """The repository's Dockerfile with the local base, its `pip` fed with wheels built on the host: the build
    container cannot verify PyPI's certificate here (the host's traffic passes a TLS proxy whose CA only the host
    trusts), and with the wheels at hand it needs no index at all."""
    with tempfile.TemporaryDirectory(prefix="frw-wheels-") as tmp:
        context = Path(tmp)
        for name in WEBHOOK_INPUTS:
            source = REPO_ROOT / name
            if source.is_dir():
                shutil.copytree(source, context / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                shutil.copy2(source, context / name)
        # Everything the Dockerfile's pip asks for: pip and wheel, setuptools to build the project, its dependencies.
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir", str(context / "wheels"), "pip", "wheel",
             "setuptools>=68", str(REPO_ROOT)], check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        for own in (context / "wheels").glob("flyte_resources_webhook-*.whl"):
            own.unlink()  # the Dockerfile builds the project's wheel itself
        (context / ".dockerignore").write_text((REPO_ROOT / ".dockerignore").read_text() + "!wheels/\n")
        # pip finds everything in the copied wheels and nothing on an index (PIP_* are pip's own settings).
        dockerfile = (REPO_ROOT / "Dockerfile").read_text()
        marker = "WORKDIR /src\n"
        if marker not in dockerfile:
            raise HarnessError(f"Dockerfile: no `{marker.strip()}` line in the build stage to put the wheels after")
        dockerfile = dockerfile.replace(
            marker, marker + "COPY wheels /wheels-host\nENV PIP_NO_INDEX=1 PIP_FIND_LINKS=/wheels-host\n", 1
        )
        (context / "Dockerfile").write_text(dockerfile)
        docker("build", "--build-arg", f"PYTHON_IMAGE={base}", "-t", image.saved_as, str(context))


def build_from_scratch(image: Image, binary: Path, path: str) -> None:
    with tempfile.TemporaryDirectory(prefix=f"frw-{image.name}-") as tmp:
        context = Path(tmp)
        shutil.copy2(binary, context / binary.name)
        (context / "Dockerfile").write_text(f'FROM scratch\nCOPY {binary.name} {path}\nENTRYPOINT ["{path}"]\n')
        docker("build", "-t", image.saved_as, str(context))


def build(image: Image) -> float:
    """Build `image` unless its tarball exists; the seconds it took (0 when cached)."""
    if image.tarball.is_file():
        return 0.0
    start = time.monotonic()
    ensure_docker()
    if image.name == "webhook":
        base = base_tag()
        if not has_image(base):
            build_base(base)
        say(f"{image.tag}: docker build with PYTHON_IMAGE={base}")
        build_webhook(image, base)
    elif image.name == "pause":
        build_from_scratch(image, default_bin_dir() / "pause", "/pause")
    else:
        build_from_scratch(image, default_bin_dir() / "kubectl", "/bin/kubectl")
    IMAGE_DIR.mkdir(parents=True, exist_ok=True)
    for old in IMAGE_DIR.glob(f"{image.name}-*.tar"):  # another worktree may still use a recent one
        if time.time() - old.stat().st_mtime > STALE_AFTER:
            old.unlink(missing_ok=True)
            docker("image", "rm", f"{image.tag}-frw-{old.stem.rsplit('-', 1)[1]}", check=False)
    partial = image.tarball.with_suffix(f".{os.getpid()}.partial")
    docker("save", "-o", str(partial), image.saved_as)
    partial.rename(image.tarball)
    return time.monotonic() - start


def size_mb(tag: str) -> float:
    return int(docker("image", "inspect", "--format", "{{.Size}}", tag).stdout) / 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--print", action="store_true", help="list the image tarballs, build nothing")
    args = parser.parse_args(argv)
    try:
        if args.print:
            for image in images():
                state = "" if image.tarball.is_file() else "  (not built)"
                print(f"{image.tag}  {image.tarball}{state}")
            return 0
        for image in images():
            seconds = build(image)
            note = f"built in {seconds:.0f} s, {size_mb(image.saved_as):.0f} MB" if seconds else "cached"
            say(f"{image.tag}: {image.tarball.name} ({note})")
    except (HarnessError, subprocess.CalledProcessError) as exc:
        print(f"images: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
