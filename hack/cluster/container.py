"""The last step of starting a container for the stand-in kubelet (`hack.cluster.kubelet`), run inside the pod's
network namespace by `ip netns exec`, which also gives it a mount namespace of its own.

`python -m hack.cluster.container SPEC.json` bind-mounts each volume at its `mountPath` (read-only where the
spec says so), remounts the root read-only for `readOnlyRootFilesystem`, then execs the container's command with
its environment, keeping its PID, so the kubelet's SIGTERM/SIGKILL reach the process itself. A mount point the
host lacks (`/etc/flyte-resources-webhook`, `/var/run/secrets/...`) is made inside an overlay of its top-level
directory that only this namespace sees, so nothing is written to the host's `/etc` or `/run`.

No image is unpacked: the root file system is the host's (the image's content is the checkout's `.venv`). The
spec's `image` paths are what an image would contain; a volume mounted over one of them (the chart's `/tmp`
emptyDir over a checkout in /tmp) would hide the program, so they are bound back on top, as an image's files
would sit beside such a volume rather than under it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def _mount(*args: str) -> None:
    result = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"container: `mount {' '.join(args)}` failed: {result.stderr.strip()}")


def _bind(fd: int, target: str) -> None:
    # The source is the descriptor opened before anything was mounted; mount(8) must not canonicalize it back to
    # a path name, which a volume mounted meanwhile may hide (or shadow with an empty directory).
    _mount("--no-canonicalize", "--bind", f"/proc/{os.getpid()}/fd/{fd}", target)


def _make_mount_point(target: Path, is_dir: bool, scratch: Path, overlaid: set[Path]) -> None:
    if target.exists():
        return
    top = Path("/", target.resolve().parts[1])  # /var/run/secrets -> /run, /etc/x -> /etc
    if top not in overlaid:
        upper, work = scratch / "overlay" / top.name / "upper", scratch / "overlay" / top.name / "work"
        upper.mkdir(parents=True, exist_ok=True)
        work.mkdir(parents=True, exist_ok=True)
        _mount("-t", "overlay", "overlay", "-o", f"lowerdir={top},upperdir={upper},workdir={work}", str(top))
        overlaid.add(top)
    if is_dir:
        target.mkdir(parents=True, exist_ok=True)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.touch()


def _keep_visible(paths: list[str], targets: list[Path], fds: dict[str, int]) -> None:
    for path in paths:
        if any(Path(path).is_relative_to(target) for target in targets):
            Path(path).mkdir(parents=True, exist_ok=True)  # inside the volume that hides it
            _bind(fds[path], path)


def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    scratch = Path(spec["scratch"])
    _mount("--make-rprivate", "/")  # nothing mounted here reaches the host
    overlaid: set[Path] = set()
    # Each source is opened before anything is mounted: a volume at /tmp must not hide sources under /tmp.
    # Mount points are made first (overlays), then mounted parents before children, as runtimes order them.
    sources = {mount["target"]: os.open(mount["source"], os.O_PATH) for mount in spec["mounts"]}
    images = {path: os.open(path, os.O_PATH) for path in spec.get("image", [])}
    for mount in spec["mounts"]:
        _make_mount_point(Path(mount["target"]), Path(mount["source"]).is_dir(), scratch, overlaid)
    for mount in sorted(spec["mounts"], key=lambda m: len(Path(m["target"]).parts)):
        target = mount["target"]
        _bind(sources[target], target)
        if mount.get("readOnly"):
            _mount("-o", "remount,bind,ro", target)
    _keep_visible(spec.get("image", []), [Path(m["target"]) for m in spec["mounts"]], images)
    if spec.get("readOnlyRootFilesystem"):
        _mount("-o", "remount,bind,ro", "/")
    os.chdir(spec.get("workingDir") or "/")
    argv = spec["argv"]
    try:
        os.execve(argv[0], argv, spec["env"])
    except OSError as exc:
        raise SystemExit(f"container: cannot exec {argv[0]}: {exc}") from None


if __name__ == "__main__":
    main(sys.argv[1])
