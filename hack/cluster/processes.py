"""Child processes, the binary cache and bounded waits: the parts every piece of the local cluster shares.

Every process listens on 127.0.0.1 only, logs to a file of its own, is stopped by its PID (SIGTERM, then SIGKILL)
and dies with the Python process that started it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

REPO_ROOT = Path(__file__).resolve().parents[2]
K8S_VERSION = os.environ.get("K8S_VERSION", "1.36.3")

STOP_TIMEOUT = 10.0
KILL_WAIT = 30.0

T = TypeVar("T")


class HarnessError(RuntimeError):
    """The control plane or the webhook could not be started; the message says why and where the logs are."""


class MissingBinaries(HarnessError):
    """A binary of the local cluster (or kwok's stage files) is missing from the binary cache."""


# --------------------------------------------------------------------------------------------- binaries


def default_bin_dir() -> Path:
    """`$FRW_BIN_DIR`, else the versioned cache `hack/control-plane.sh` fills."""
    if os.environ.get("FRW_BIN_DIR"):
        return Path(os.environ["FRW_BIN_DIR"]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "flyte-resources-webhook" / f"k8s-v{K8S_VERSION}"


_EXECUTABLES = ("etcd", "kube-apiserver", "kube-scheduler", "kube-controller-manager", "kwok", "kubectl", "helm")
KWOK_STAGES = "kwok-stages"  # kwok's kustomize/stage/ tree, copied next to the binary by hack/control-plane.sh


class _InDirectory:
    """A file of the binary cache, as an attribute of `Binaries`."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, binaries: Binaries, owner: type | None = None) -> Path:
        return binaries.directory / self.name


@dataclass(frozen=True)
class Binaries:
    directory: Path

    @classmethod
    def locate(cls, directory: Path | None = None) -> Binaries:
        directory = directory or default_bin_dir()
        missing = [name for name in _EXECUTABLES if not os.access(directory / name, os.X_OK)]
        if not (directory / KWOK_STAGES).is_dir():
            missing.append(KWOK_STAGES + "/")
        if missing:
            raise MissingBinaries(
                f"missing {', '.join(missing)} in {directory}: run `make control-plane` to build/fetch them "
                f"(or point FRW_BIN_DIR at a directory holding {', '.join(_EXECUTABLES)} and {KWOK_STAGES}/)"
            )
        return cls(directory)

    etcd = _InDirectory("etcd")
    kube_apiserver = _InDirectory("kube-apiserver")
    kube_scheduler = _InDirectory("kube-scheduler")
    kube_controller_manager = _InDirectory("kube-controller-manager")
    kwok = _InDirectory("kwok")
    kwok_stages = _InDirectory(KWOK_STAGES)
    kubectl = _InDirectory("kubectl")
    helm = _InDirectory("helm")


# --------------------------------------------------------------------------------------------- helpers


def free_port() -> int:
    """A port that was free on 127.0.0.1 a moment ago (callers retry on the rare clash)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    probe: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    interval: float = 0.2,
    alive: Callable[[], str | None] | None = None,
) -> T:
    """Call `probe` until it returns something truthy; `alive` says why to give up early."""
    deadline = time.monotonic() + timeout
    last_error: str = "no attempt finished"
    while True:
        if alive is not None and (reason := alive()):
            raise HarnessError(f"{what}: {reason}")
        try:
            result = probe()
        except Exception as exc:  # the thing we wait for is not there yet: remember why
            last_error = f"{type(exc).__name__}: {exc}"
        else:
            if result:
                return result
            last_error = f"not yet (last result: {result!r})"
        if time.monotonic() >= deadline:
            raise HarnessError(f"timed out after {timeout:.0f} s waiting for {what}; last: {last_error}")
        time.sleep(interval)


def tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"({path} does not exist)"
    return "\n".join(text.splitlines()[-lines:])


def _die_with_parent() -> None:
    """Runs in the child before exec: on Linux, get SIGKILL when the parent dies without stopping it (itself
    SIGKILLed, e.g. by a CI timeout), so no etcd or apiserver outlives its run. SIGKILL, not SIGTERM: an apiserver
    whose etcd is gone hangs in graceful shutdown. Linux ties this to the thread that started the child: start
    processes from a thread that lives as long as they should (the main thread, as pytest fixtures do)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


class Process:
    """One child process with its output in a log file; stopped by its PID (SIGTERM, then SIGKILL)."""

    def __init__(self, name: str, argv: list[str], log_path: Path, *, env: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def start(self) -> Process:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"$ {' '.join(self.argv)}\n".encode())
            log.flush()
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=REPO_ROOT,
                # Ctrl-C in the terminal reaches only us; we stop the children in order.
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        return self

    def exited(self) -> str | None:
        """Why the process is gone (None while it runs), with the end of its log."""
        if self.popen is None:
            return f"{self.name} was never started"
        code = self.popen.poll()
        if code is None:
            return None
        return f"{self.name} (pid {self.popen.pid}) exited with code {code}; end of {self.log_path}:\n" + tail(
            self.log_path
        )

    def terminate(self) -> None:
        """SIGTERM, without waiting (see `stop_together`)."""
        if self.popen is not None and self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.popen.pid, signal.SIGTERM)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        self.terminate()
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL and reap. A killed process can still take a while to be gone (a loaded machine tearing down
        its memory): waited for at most KILL_WAIT, then left to exit on its own, with a line saying so, rather
        than failing the stop of everything else."""
        assert self.popen is not None
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.popen.pid, signal.SIGKILL)
        try:
            self.popen.wait(KILL_WAIT)
        except subprocess.TimeoutExpired:
            print(f"{self.name} (pid {self.popen.pid}) still exiting {KILL_WAIT:.0f} s after SIGKILL", file=sys.stderr)


def stop_together(processes: list[Process], timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM to all, then wait for each (SIGKILL after `timeout`): processes that drain for a few seconds on
    SIGTERM (the webhook does) drain at the same time instead of one after another."""
    for process in processes:
        process.terminate()
    for process in processes:
        process.stop(timeout)


def http_get(url: str, *, timeout: float = 2.0, context: ssl.SSLContext | None = None) -> tuple[int, str]:
    """Status and body; status 0 and the reason when nothing answers (not listening yet, or gone)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            return int(response.status), response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode(errors="replace")
    except OSError as exc:
        return 0, str(exc)
