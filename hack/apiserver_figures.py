"""What a burst costs the kube-apiserver, in its own figures: admission metrics and a CPU profile.

`scrape` reads the apiserver's `/metrics` (before and after a burst); `AdmissionFigures.between` keeps the
deltas of the admission families that matter and `summary_lines` prints them per pod:

* calls per pod to each admission webhook (`apiserver_admission_webhook_request_total`, CREATE), so a second
  call per pod (a reinvocation) shows as 2.00;
* in-tree passes per pod: how often `ExtendedResourceToleration` ran per created pod
  (`apiserver_admission_controller_admission_duration_seconds`, CREATE); a pod's create is one pass, the
  scheduler's binding (a CREATE of `pods/binding`) another, and every reinvocation of the chain one more;
* mean time per pod in the mutating step (`apiserver_admission_step_admission_duration_seconds`, admit) and in
  each webhook (`apiserver_admission_webhook_admission_duration_seconds`);
* mutating admission policy evaluations (`apiserver_mutating_admission_policy_check_*`) where the apiserver has them.

`Profiler` takes a CPU profile (`/debug/pprof/profile`, on by default: `--profiling=true`) over a window and
`profile_summary` reads it with `go tool pprof`: CPU ms per pod in a few areas (admission, webhook calls, JSON
patch, TLS handshakes, storage, GC) and the admission path's top functions by cumulative CPU.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import ssl
import subprocess
import threading
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path

from hack.webhook_process import cpu_seconds

Labels = tuple[tuple[str, str], ...]
Samples = dict[tuple[str, Labels], float]

FAMILIES = (
    "apiserver_admission_webhook_request_total",
    "apiserver_admission_webhook_admission_duration_seconds",
    "apiserver_admission_step_admission_duration_seconds",
    "apiserver_admission_controller_admission_duration_seconds",
    "apiserver_mutating_admission_policy_check",
)
# The in-tree plugin whose pass count shows how often the chain ran per pod.
PASS_PROBE = "ExtendedResourceToleration"

_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text: str, prefixes: Iterable[str] = FAMILIES) -> Samples:
    """The samples of the families named by `prefixes` (histograms: `_sum` and `_count` only)."""
    wanted = tuple(prefixes)
    samples: Samples = {}
    for line in text.splitlines():
        if not line or line[0] == "#" or not line.startswith(wanted):
            continue
        match = _LINE.match(line)
        if match is None or match.group(1).endswith("_bucket"):
            continue
        labels = tuple(sorted(_LABEL.findall(match.group(2) or "")))
        samples[(match.group(1), labels)] = float(match.group(3))
    return samples


def scrape(server: str, token: str, ca_file: Path, timeout: float = 10.0) -> Samples:
    """The apiserver's admission samples now."""
    request = urllib.request.Request(server + "/metrics", headers={"Authorization": f"Bearer {token}"})
    context = ssl.create_default_context(cafile=str(ca_file))
    with urllib.request.urlopen(request, timeout=timeout, context=context) as reply:
        return parse(reply.read().decode())


def _select(samples: Samples, metric: str, **match: str) -> float:
    total = 0.0
    for (sample, labels), value in samples.items():
        if sample == metric and all(dict(labels).get(k) == v for k, v in match.items()):
            total += value
    return total


@dataclasses.dataclass
class AdmissionFigures:
    """Admission figures of one burst, per created pod."""

    pods: int
    webhook_calls: dict[str, float]  # webhook name -> calls per pod (CREATE)
    webhook_ms: dict[str, float]  # webhook name -> ms per pod in that webhook (CREATE)
    passes: float  # in-tree admission passes per pod (PASS_PROBE's CREATE observations)
    mutating_step_ms: float  # ms per pod in the mutating (admit) step, CREATE
    validating_step_ms: float
    policy_checks: float  # mutating admission policy evaluations per pod (0 where the apiserver has no metric)

    @classmethod
    def between(cls, before: Samples, after: Samples, pods: int) -> AdmissionFigures:
        delta = {key: after[key] - before.get(key, 0.0) for key in after}
        names = sorted(
            {
                dict(labels)["name"]
                for (sample, labels) in delta
                if sample == "apiserver_admission_webhook_request_total" and delta[(sample, labels)] > 0
            }
        )
        per_pod = 1.0 / max(pods, 1)
        calls = {
            n: per_pod * _select(delta, "apiserver_admission_webhook_request_total", name=n, operation="CREATE")
            for n in names
        }
        webhook_ms = {
            n: 1000
            * per_pod
            * _select(delta, "apiserver_admission_webhook_admission_duration_seconds_sum", name=n, operation="CREATE")
            for n in names
        }
        step = "apiserver_admission_step_admission_duration_seconds_sum"
        controller = "apiserver_admission_controller_admission_duration_seconds_count"
        policy = "apiserver_mutating_admission_policy_check_total"
        checks = sum(v for (s, _), v in delta.items() if s.startswith(policy))
        return cls(
            pods=pods,
            webhook_calls=calls,
            webhook_ms=webhook_ms,
            passes=per_pod * _select(delta, controller, name=PASS_PROBE, type="admit", operation="CREATE"),
            mutating_step_ms=1000 * per_pod * _select(delta, step, type="admit", operation="CREATE"),
            validating_step_ms=1000 * per_pod * _select(delta, step, type="validate", operation="CREATE"),
            policy_checks=per_pod * checks,
        )

    def line(self, webhook_names: Mapping[str, str]) -> str:
        """One line; `webhook_names` maps a configuration's webhook name to a short label."""
        hooks = [
            f"{webhook_names.get(n, n)} {self.webhook_calls[n]:.2f} calls/pod {self.webhook_ms[n]:.2f} ms/pod"
            for n in self.webhook_calls
            if self.webhook_calls[n] > 0
        ]
        parts = [
            f"passes/pod {self.passes:.2f}",
            f"admit {self.mutating_step_ms:.2f} ms/pod",
            f"validate {self.validating_step_ms:.2f} ms/pod",
            *(hooks or ["no webhook call"]),
        ]
        if self.policy_checks:
            parts.append(f"policy checks {self.policy_checks:.2f}/pod")
        return ", ".join(parts)


# --------------------------------------------------------------------------------------------- the profile

# Areas of the apiserver's CPU, each by a regex pprof focuses on (any frame of a sample matching it).
AREAS = {
    "admission": r"k8s\.io/apiserver/pkg/admission\.",
    "webhook calls": r"admission/plugin/webhook/mutating\.",
    "policy (CEL)": r"admission/plugin/policy/mutating\.",
    "JSON patch": r"json-patch",
    "TLS handshakes": r"crypto/tls\.\(\*Conn\)\.(client|server)?[Hh]andshake",
    "storage": r"k8s\.io/apiserver/pkg/storage/",
    "GC": r"runtime\.gcBgMarkWorker",
}


class Profiler:
    """`/debug/pprof/profile?seconds=N`, fetched in a thread, so it covers what the caller runs meanwhile."""

    def __init__(self, server: str, token: str, ca_file: Path, seconds: int, out: Path) -> None:
        self.url = f"{server}/debug/pprof/profile?seconds={seconds}"
        self.headers = {"Authorization": f"Bearer {token}"}
        self.context = ssl.create_default_context(cafile=str(ca_file))
        self.seconds = seconds
        self.out = out
        self.error: str | None = None
        self._thread = threading.Thread(target=self._fetch, daemon=True)

    def _fetch(self) -> None:
        try:
            request = urllib.request.Request(self.url, headers=self.headers)
            with urllib.request.urlopen(request, timeout=self.seconds + 30, context=self.context) as reply:
                self.out.write_bytes(reply.read())
        except OSError as exc:
            self.error = str(exc)

    def start(self) -> Profiler:
        self._thread.start()
        return self

    def wait(self) -> Path | None:
        self._thread.join()
        return None if self.error else self.out


def _go() -> str:
    found = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None)
    if found is None:
        raise FileNotFoundError("go is not installed: `go tool pprof` reads the apiserver's CPU profile")
    return found


_RUNTIME = r"^(runtime|internal/runtime|internal/bytealg|sync|reflect)[./]"
_GENERIC = re.compile(r"\[go\.shape.*\]")  # a generic function's instantiation, hundreds of characters
_QUANTITY = re.compile(r"([\d.]+)(ms|s|us|min)?")
_SHOWING = re.compile(r"Showing nodes accounting for ([\d.]+)(ms|s|us|min)?")
_TOTAL = re.compile(r"of ([\d.]+)(ms|s|us|min)? total")
_UNIT = {"us": 0.001, "ms": 1.0, "s": 1000.0, "min": 60000.0, None: 1000.0}


def _pprof(profile: Path, *args: str) -> str:
    return subprocess.run(
        [_go(), "tool", "pprof", "-top", *args, str(profile)], capture_output=True, text=True, check=True, timeout=120
    ).stdout


def _ms(match: re.Match[str] | None) -> float:
    return float(match.group(1)) * _UNIT[match.group(2)] if match else 0.0


@dataclasses.dataclass
class ProfileSummary:
    pods: float  # pods created in the profile's window
    total_ms: float  # CPU sampled in the window
    areas: dict[str, float]  # area -> CPU ms
    top: list[str]  # pprof's top lines of the admission path by cumulative CPU

    def per_pod(self, ms: float) -> float:
        return ms / max(self.pods, 1.0)

    def top_per_pod(self) -> list[tuple[float, str]]:
        """The top lines as (cumulative CPU ms per pod, function)."""
        out = []
        for line in self.top:
            fields = line.split(None, 5)
            match = _QUANTITY.fullmatch(fields[3]) if len(fields) == 6 else None
            if match is not None:
                out.append((self.per_pod(_ms(match)), _GENERIC.sub("[...]", fields[5])))
        return out


def profile_summary(profile: Path, pods: float, top: int = 16) -> ProfileSummary:
    """CPU per area and the admission path's top functions by cumulative CPU (`go tool pprof -top -cum`)."""
    # The admission path's heaviest functions by cumulative CPU (the Go runtime's own frames hidden): where a
    # create's admission time goes, webhook call, patch, CEL, conversion.
    text = _pprof(profile, "-cum", f"-nodecount={top}", f"-focus={AREAS['admission']}", f"-hide={_RUNTIME}")
    total = _ms(_TOTAL.search(_pprof(profile, "-nodecount=1")))
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.lstrip().startswith("flat")), len(lines))
    areas = {}
    for area, regex in AREAS.items():
        # With every node shown, the nodes' own CPU adds up to the CPU of the samples the focus kept.
        focused = _pprof(profile, f"-focus={regex}", "-nodecount=1000000")
        areas[area] = _ms(_SHOWING.search(focused))
    return ProfileSummary(pods=pods, total_ms=total, areas=areas, top=[line for line in lines[start + 1 :] if line])


# --------------------------------------------------------------------------------------------- around it


def cpu_by_process(pids: Mapping[str, int]) -> dict[str, float]:
    """CPU seconds so far of each named process (0 for one that is gone)."""
    out = {}
    for name, pid in pids.items():
        try:
            out[name] = cpu_seconds(pid)
        except OSError:
            out[name] = 0.0
    return out


class ConnectionCounter:
    """The TCP connections to a listener on `port` while it ran, from /proc/net/tcp sampled 10 times a second: the
    listener's accepted sockets, and the client sockets in TIME_WAIT after a close (so a connection that lived
    shorter than a sample still shows). Nothing is sampled for port 0.

    A client that keeps its connections alive shows about as many as it runs requests at once; one that
    reconnects (an idle pool too small for its concurrency, or a server closing them) shows hundreds."""

    def __init__(self, port: int, interval: float = 0.1) -> None:
        self.port = port
        self.local = f":{port:04X}"
        self.interval = interval
        self.peers: set[tuple[str, str]] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                lines = Path(table).read_text().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                local, remote, state = line.split()[1:4]
                if local.endswith(self.local) and state != "0A":  # 0A: the listening socket itself
                    self.peers.add((remote, local))
                elif remote.endswith(self.local) and state == "06":  # 06: TIME_WAIT, closed by the client
                    self.peers.add((local, remote))

    def __enter__(self) -> ConnectionCounter:
        if self.port:
            self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        if self.port:
            self._stop.set()
            self._thread.join()
            self.sample()
