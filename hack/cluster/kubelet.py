"""A stand-in kubelet for this project's chart only (test tooling).

What it stands in for: the kubelet and container runtime of the nodes the chart's pods are scheduled to. KWOK
stays those nodes' kubelet for everything else (node status, lease, every other pod); its pod stages skip pods
labelled `app.kubernetes.io/name=flyte-resources-webhook` (`ControlPlane(kwok_skip_pods_labelled=...)`), and
this process runs exactly those, once kube-scheduler has bound them. Per pod it does what a kubelet does, from the
pod's own spec:

* network: a network namespace with a pod IP from its node's pod subnet (`hack.cluster.podnet`), reported as
  `status.podIP`, so the Service's EndpointSlices carry it and the apiserver dials it;
* volumes: ConfigMap, Secret and projected volumes (ServiceAccount token from the TokenRequest API, bound to the
  pod; `kube-root-ca.crt`; the namespace from the downward API) written with kubelet's atomic layout (files in a
  timestamped directory, `..data` symlink swapped by rename) and rewritten when the objects change; emptyDir;
  each mounted at its `mountPath` (subPath mounts resolved once, at start, as kubelet does);
* the container: command/args/env as rendered, the image's entrypoint mapped to what the image would contain
  (`--image REPOSITORY=ENTRYPOINT`: the project's image runs the checkout's `.venv` console script, the `helm
  test` kubectl image the cached kubectl), `KUBERNETES_SERVICE_HOST/PORT` pointing at the apiserver;
* probes: the spec's readiness and liveness probes (httpGet, tcpSocket, exec) with their timings, reported in
  `status.conditions` and `containerStatuses`; a failed liveness probe or an exit restarts the container
  (`restartPolicy`), with kubelet's back-off;
* deletion: preStop hook, SIGTERM, the rest of the grace period, SIGKILL, then the final delete.

What it does not do: pull or unpack images (the root file system is the host's), enforce resources, cgroups,
seccomp or `runAsUser` (processes run as root: the interpreter lives under /root), run init or sidecar
containers or more than one container per pod, startup probes, DNS (no cluster DNS exists), or kube-proxy (the
apiserver address is given directly instead of the `kubernetes` Service's ClusterIP). It writes pod status with
the admin credentials, not a node's.

Run as `python -m hack.cluster.kubelet --kubeconfig ... --bridge ... --subnet ...` (`hack.cluster.live` starts it).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hack.cluster.podnet import PodNetwork
from hack.cluster.processes import _die_with_parent as die_with_parent

SYNC_INTERVAL = 0.5  # how often pods are listed (a kubelet watches; a short poll is as good for a few pods)
VOLUME_SYNC_INTERVAL = 2.0  # how often ConfigMaps/Secrets/tokens of mounted volumes are re-read
BACKOFF_START, BACKOFF_MAX = 10.0, 300.0  # kubelet's crash-loop back-off
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
STOP_GRACE = 2.0  # per container, when the stand-in kubelet itself is stopped
TOKEN_REFRESH = 0.8  # kubelet refreshes a projected token after 80 % of its lifetime


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def log(message: str) -> None:
    print(f"{now_rfc3339()} {message}", flush=True)


# ------------------------------------------------------------------------------------------------ volumes


def atomic_write(directory: Path, files: Mapping[str, bytes], mode: int) -> bool:
    """Write `files` (relative path -> content) into `directory` as kubelet's AtomicWriter does: into a fresh
    `..<timestamp>` directory, then one rename swaps the `..data` symlink to it, so a reader sees the old set or
    the new set, never a mix. Top-level names are symlinks through `..data`. Returns whether anything changed."""
    data_link = directory / "..data"
    if data_link.exists():
        current = {}
        for rel in files:
            path = data_link / rel
            current[rel] = path.read_bytes() if path.is_file() else None
        old_names = {
            p.relative_to(data_link.resolve()).as_posix() for p in data_link.resolve().rglob("*") if p.is_file()
        }
        if current == dict(files) and old_names == set(files):
            return False
    directory.mkdir(parents=True, exist_ok=True)
    stamp = directory / f"..{datetime.datetime.now(datetime.UTC).strftime('%Y_%m_%d_%H_%M_%S.%f')}"
    stamp.mkdir()
    for rel, content in files.items():
        target = stamp / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        target.chmod(mode)
    old = data_link.resolve() if data_link.is_symlink() else None
    tmp = directory / "..data_tmp"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(stamp.name)
    os.rename(tmp, data_link)  # the atomic swap
    tops = {rel.split("/", 1)[0] for rel in files}
    for top in tops:
        link = directory / top
        if not link.is_symlink():
            link.symlink_to(f"..data/{top}")
    for entry in directory.iterdir():
        if entry.is_symlink() and not entry.name.startswith("..") and entry.name not in tops:
            entry.unlink()
    if old is not None and old != stamp:
        shutil.rmtree(old, ignore_errors=True)
    return True


class Volumes:
    """The pod's volumes under `root/<volume>`, rewritten by `sync()` when their sources change."""

    def __init__(self, api: Any, pod: dict[str, Any], root: Path) -> None:
        self.api = api
        self.pod = pod
        self.root = root
        self.namespace = pod["metadata"]["namespace"]
        self.tokens: dict[tuple[str, str], tuple[bytes, float, float]] = {}  # (volume, path) -> token, got, ttl

    def path(self, name: str) -> Path:
        return self.root / name

    def sync(self) -> None:
        for volume in self.pod["spec"].get("volumes") or []:
            name = volume["name"]
            if "emptyDir" in volume:
                self.path(name).mkdir(parents=True, exist_ok=True)
                self.path(name).chmod(0o777)
            elif "configMap" in volume:
                source = volume["configMap"]
                files = self._config_map(source["name"], source.get("items"), source.get("optional", False))
                atomic_write(self.path(name), files, source.get("defaultMode", 0o644))
            elif "secret" in volume:
                source = volume["secret"]
                files = self._secret(source["secretName"], source.get("items"), source.get("optional", False))
                atomic_write(self.path(name), files, source.get("defaultMode", 0o644))
            elif "projected" in volume:
                files = {}
                for source in volume["projected"].get("sources") or []:
                    files.update(self._projected(name, source))
                atomic_write(self.path(name), files, volume["projected"].get("defaultMode", 0o644))
            else:
                raise RuntimeError(f"volume {name}: only configMap, secret, projected and emptyDir are supported")

    def _select(self, data: Mapping[str, bytes], items: list[dict[str, Any]] | None, what: str) -> dict[str, bytes]:
        if not items:
            return dict(data)
        out = {}
        for item in items:
            if item["key"] not in data:
                raise RuntimeError(f"{what} has no key {item['key']!r}")
            out[item["path"]] = data[item["key"]]
        return out

    def _config_map(self, name: str, items: Any, optional: bool) -> dict[str, bytes]:
        from kubernetes import client

        try:
            cm = client.CoreV1Api(self.api).read_namespaced_config_map(name, self.namespace)
        except client.ApiException as exc:
            if exc.status == 404 and optional:
                return {}
            raise RuntimeError(f"configmap {self.namespace}/{name}: {exc.status} {exc.reason}") from None
        data = {k: v.encode() for k, v in (cm.data or {}).items()}
        data.update({k: base64.b64decode(v) for k, v in (cm.binary_data or {}).items()})
        return self._select(data, items, f"configmap {name}")

    def _secret(self, name: str, items: Any, optional: bool) -> dict[str, bytes]:
        from kubernetes import client

        try:
            secret = client.CoreV1Api(self.api).read_namespaced_secret(name, self.namespace)
        except client.ApiException as exc:
            if exc.status == 404 and optional:
                return {}
            raise RuntimeError(f"secret {self.namespace}/{name}: {exc.status} {exc.reason}") from None
        data = {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}
        return self._select(data, items, f"secret {name}")

    def _projected(self, volume: str, source: Mapping[str, Any]) -> dict[str, bytes]:
        if "serviceAccountToken" in source:
            token = source["serviceAccountToken"]
            return {token["path"]: self._token(volume, token)}
        if "configMap" in source:
            cm = source["configMap"]
            return self._config_map(cm["name"], cm.get("items"), cm.get("optional", False))
        if "secret" in source:
            secret = source["secret"]
            return self._secret(secret["name"], secret.get("items"), secret.get("optional", False))
        if "downwardAPI" in source:
            return {item["path"]: field_value(self.pod, item["fieldRef"]["fieldPath"]).encode()
                    for item in source["downwardAPI"].get("items") or []}  # fmt: skip
        raise RuntimeError(f"projected volume {volume}: unsupported source {sorted(source)}")

    def _token(self, volume: str, source: Mapping[str, Any]) -> bytes:
        """A token for the pod's ServiceAccount, bound to the pod, from the TokenRequest API (refreshed at 80 %)."""
        from kubernetes import client

        key = (volume, source["path"])
        if key in self.tokens:
            token, got, ttl = self.tokens[key]
            if time.monotonic() - got < TOKEN_REFRESH * ttl:
                return token
        meta = self.pod["metadata"]
        spec: dict[str, Any] = {
            "expirationSeconds": int(source.get("expirationSeconds", 3607)),
            "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]},
        }
        if source.get("audience"):
            spec["audiences"] = [source["audience"]]
        sa = self.pod["spec"].get("serviceAccountName") or "default"
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
        result = client.CoreV1Api(self.api).create_namespaced_service_account_token(sa, self.namespace, body)
        token = result.status.token.encode()
        self.tokens[key] = (token, time.monotonic(), float(spec["expirationSeconds"]))
        return token


def field_value(pod: Mapping[str, Any], path: str) -> str:
    meta, status = pod["metadata"], pod.get("status") or {}
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": pod["spec"].get("nodeName"),
        "spec.serviceAccountName": pod["spec"].get("serviceAccountName"),
        "status.podIP": status.get("podIP"),
        "status.hostIP": status.get("hostIP"),
    }
    if path in simple:
        return str(simple[path] or "")
    for prefix, mapping in (("metadata.labels", meta.get("labels")), ("metadata.annotations", meta.get("annotations"))):
        if path.startswith(prefix + "['") and path.endswith("']"):
            return str((mapping or {}).get(path[len(prefix) + 2 : -2], ""))
    raise RuntimeError(f"fieldRef {path} is not supported by the stand-in kubelet")


# ------------------------------------------------------------------------------------------------ probes


class Probe:
    """One probe of the container spec with kubelet's counting: `failureThreshold` failures in a row flip it
    to failing, `successThreshold` successes back."""

    def __init__(self, spec: Mapping[str, Any], ports: Mapping[str, int], kind: str) -> None:
        self.spec = dict(spec)
        self.ports = ports
        self.kind = kind
        self.period = float(spec.get("periodSeconds", 10))
        self.timeout = float(spec.get("timeoutSeconds", 1))
        self.failure_threshold = int(spec.get("failureThreshold", 3))
        self.success_threshold = int(spec.get("successThreshold", 1))
        self.initial_delay = float(spec.get("initialDelaySeconds", 0))
        self.next_at = 0.0
        self.successes = self.failures = 0
        self.ok = kind == "liveness"  # readiness starts false, liveness true (kubelet's initial results)
        self.last_error = ""

    def reset(self, started: float) -> None:
        self.next_at = started + self.initial_delay
        self.successes = self.failures = 0
        self.ok = self.kind == "liveness"

    def _port(self, port: Any) -> int:
        return int(port) if str(port).isdigit() else self.ports[str(port)]

    def run_once(self, pod_ip: str, pid: int | None) -> bool:
        try:
            if "httpGet" in self.spec:
                get = self.spec["httpGet"]
                scheme = get.get("scheme", "HTTP").lower()
                url = f"{scheme}://{get.get('host') or pod_ip}:{self._port(get['port'])}{get.get('path', '/')}"
                context = ssl._create_unverified_context() if scheme == "https" else None  # kubelet does not verify
                with urllib.request.urlopen(url, timeout=self.timeout, context=context) as response:
                    return 200 <= response.status < 400
            if "tcpSocket" in self.spec:
                port = self._port(self.spec["tcpSocket"]["port"])
                with socket.create_connection((pod_ip, port), timeout=self.timeout):
                    return True
            if "exec" in self.spec and pid:
                argv = ["nsenter", "-t", str(pid), "-m", "-n", "--", *self.spec["exec"]["command"]]
                return subprocess.run(argv, capture_output=True, timeout=self.timeout, check=False).returncode == 0
        except (OSError, urllib.error.URLError, subprocess.TimeoutExpired, KeyError) as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            return False
        return False

    def due(self, now: float) -> bool:
        return now >= self.next_at

    def tick(self, now: float, pod_ip: str, pid: int | None) -> bool:
        """Run the probe; returns whether its result flipped."""
        self.next_at = now + self.period
        before = self.ok
        if self.run_once(pod_ip, pid):
            self.failures, self.successes = 0, self.successes + 1
            if self.successes >= self.success_threshold:
                self.ok = True
        else:
            self.successes, self.failures = 0, self.failures + 1
            if self.failures >= self.failure_threshold:
                self.ok = False
        return before != self.ok


# ------------------------------------------------------------------------------------------------ pods


class PodWorker(threading.Thread):
    """Everything for one pod, from its first sight on a node to its final delete."""

    def __init__(self, kubelet: Kubelet, pod: dict[str, Any]) -> None:
        super().__init__(name=f"pod-{pod['metadata']['name']}", daemon=True)
        self.kubelet = kubelet
        self.pod = pod
        self.lock = threading.Lock()
        meta = pod["metadata"]
        self.key = f"{meta['namespace']}/{meta['name']}"
        self.uid = meta["uid"]
        self.dir = kubelet.run_dir / "pods" / self.uid
        self.pod_ip = ""
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self.started_at = ""
        self.last_state: dict[str, Any] = {}
        self.finished: dict[str, Any] | None = None  # terminated state of a container that will not restart
        self.stop_requested = threading.Event()
        self.gone = threading.Event()

    def update(self, pod: dict[str, Any]) -> None:
        with self.lock:
            self.pod = pod

    # -------------------------------------------------------------------------------- lifecycle

    def run(self) -> None:
        try:
            self._run()
        except Exception:
            log(f"{self.key}: worker failed:\n{traceback.format_exc()}")
            self._kill(0)
        finally:
            self._teardown()

    def _run(self) -> None:
        spec = self.pod["spec"]
        containers = spec.get("containers") or []
        if len(containers) != 1 or spec.get("initContainers"):
            raise RuntimeError("the stand-in kubelet runs pods with exactly one container and no init containers")
        self.container = containers[0]
        self.pod_ip = self.kubelet.allocate_ip(self.uid)
        self.netns = self.kubelet.network.add_pod(self.pod_ip)
        self.volumes = Volumes(self.kubelet.api, self.pod, self.dir / "volumes")
        while True:  # as kubelet, the container waits until every volume can be set up (ContainerCreating)
            try:
                self.volumes.sync()
                break
            except Exception as exc:
                if self.pod["metadata"].get("deletionTimestamp"):
                    self._final_delete()
                    return
                if self.stop_requested.is_set():
                    return
                log(f"{self.key}: volumes not ready: {exc}")
                time.sleep(1.0)
        ports = {p["name"]: int(p["containerPort"]) for p in self.container.get("ports") or [] if p.get("name")}
        self.probes = {
            kind: Probe(self.container[f"{kind}Probe"], ports, kind)
            for kind in ("readiness", "liveness")
            if self.container.get(f"{kind}Probe")
        }
        restart_policy = spec.get("restartPolicy", "Always")
        backoff_until = 0.0
        next_volume_sync = time.monotonic() + VOLUME_SYNC_INTERVAL
        self._start_container()
        self._report()
        while True:
            with self.lock:
                deleting = self.pod["metadata"].get("deletionTimestamp") is not None
            if deleting or self.stop_requested.is_set():
                grace = self.pod["metadata"].get("deletionGracePeriodSeconds")
                if not deleting:
                    grace = STOP_GRACE  # the kubelet itself stops (end of a run): no pod is being deleted
                self._kill(float(grace if grace is not None else spec.get("terminationGracePeriodSeconds", 30)))
                self._report()
                if deleting:
                    self._final_delete()
                return
            now = time.monotonic()
            if now >= next_volume_sync:
                next_volume_sync = now + VOLUME_SYNC_INTERVAL
                with contextlib.suppress(Exception):
                    self.volumes.pod = self.pod
                    self.volumes.sync()
            if self.process is not None and (code := self.process.poll()) is not None:
                self._exited(code, "Error" if code else "Completed")
                if restart_policy == "Always" or (restart_policy == "OnFailure" and code != 0):
                    backoff_until = now + min(BACKOFF_START * 2 ** max(self.restarts - 1, 0), BACKOFF_MAX)
                else:
                    self.finished = self.last_state
                self._report()
            elif self.process is None and self.finished is None and now >= backoff_until:
                self.restarts += 1
                self._start_container()
                self._report()
            elif self.process is not None:
                changed = False
                for probe in self.probes.values():
                    if probe.due(now):
                        changed |= probe.tick(now, self.pod_ip, self.process.pid)
                live = self.probes.get("liveness")
                if live is not None and not live.ok:
                    log(f"{self.key}: liveness probe failed ({live.last_error}): restarting the container")
                    self._kill(float(spec.get("terminationGracePeriodSeconds", 30)))
                    self._exited(137, "Error")
                    backoff_until = now + BACKOFF_START
                    changed = True
                if changed:
                    self._report()
            time.sleep(0.1)

    def _argv(self) -> list[str]:
        image = self.container.get("image", "")
        entrypoint = self.kubelet.entrypoint(image)
        command = self.container.get("command") or entrypoint
        if not command:
            raise RuntimeError(f"image {image} is not one the stand-in kubelet can run (see --image)")
        argv = [*command, *(self.container.get("args") or [])]
        if not os.path.isabs(argv[0]):
            argv[0] = shutil.which(argv[0]) or argv[0]
        return argv

    def _env(self) -> dict[str, str]:
        host, port = self.kubelet.apiserver_host, str(self.kubelet.apiserver_port)
        env = {
            "PATH": DEFAULT_PATH,
            "HOSTNAME": self.pod["metadata"]["name"],
            "KUBERNETES_SERVICE_HOST": host,
            "KUBERNETES_SERVICE_PORT": port,
            "KUBERNETES_SERVICE_PORT_HTTPS": port,
            "KUBERNETES_PORT": f"tcp://{host}:{port}",
        }
        env.update(self.kubelet.image_env(self.container.get("image", "")))
        for var in self.container.get("env") or []:
            if "value" in var:
                env[var["name"]] = str(var["value"])
            elif "fieldRef" in (var.get("valueFrom") or {}):
                pod = {**self.pod, "status": {**(self.pod.get("status") or {}), "podIP": self.pod_ip}}
                env[var["name"]] = field_value(pod, var["valueFrom"]["fieldRef"]["fieldPath"])
            else:
                raise RuntimeError(f"env {var['name']}: only value and fieldRef are supported")
        return env

    def _mounts(self) -> list[dict[str, Any]]:
        mounts = []
        for mount in self.container.get("volumeMounts") or []:
            source = self.volumes.path(mount["name"])
            if mount.get("subPath"):
                source = Path(os.path.realpath(source / mount["subPath"]))  # resolved once, as kubelet does
            mounts.append({"source": str(source), "target": mount["mountPath"], "readOnly": mount.get("readOnly")})
        return mounts

    def _start_container(self) -> None:
        security = self.container.get("securityContext") or {}
        spec = {
            "argv": self._argv(),
            "env": self._env(),
            "mounts": self._mounts(),
            "workingDir": self.container.get("workingDir") or self.kubelet.image_workdir(self.container["image"]),
            "readOnlyRootFilesystem": bool(security.get("readOnlyRootFilesystem")),
            "scratch": str(self.dir / f"scratch-{self.restarts}"),
            "image": self.kubelet.image_paths(self.container["image"]),
        }
        spec_file = self.dir / f"container-{self.restarts}.json"
        spec_file.write_text(json.dumps(spec))
        log_path = (
            self.kubelet.run_dir / "logs" / f"{self.pod['metadata']['namespace']}_{self.pod['metadata']['name']}.log"
        )
        log_path.parent.mkdir(parents=True, exist_ok=True)
        argv = ["ip", "netns", "exec", self.netns, sys.executable, "-m", "hack.cluster.container", str(spec_file)]
        with log_path.open("ab") as out:
            out.write(f"--- start {self.restarts}: {' '.join(spec['argv'])}\n".encode())
            out.flush()
            self.process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                cwd=self.kubelet.repo_root, start_new_session=True,
                preexec_fn=die_with_parent,  # this thread lives as long as the container (see its docstring)
            )  # fmt: skip
        self.started_at = now_rfc3339()
        for probe in self.probes.values():
            probe.reset(time.monotonic())
        log(f"{self.key}: started container (pid {self.process.pid}, ip {self.pod_ip}, restart {self.restarts})")

    def _exited(self, code: int, reason: str) -> None:
        self.last_state = {
            "terminated": {
                "exitCode": code,
                "reason": reason,
                "startedAt": self.started_at,
                "finishedAt": now_rfc3339(),
            }
        }
        self.process = None
        for probe in self.probes.values():
            probe.reset(time.monotonic())
        log(f"{self.key}: container exited with code {code}")

    def _kill(self, grace: float) -> None:
        """preStop, SIGTERM, the rest of the grace period, SIGKILL (kubelet's killContainer)."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        deadline = time.monotonic() + grace
        hook = (self.container.get("lifecycle") or {}).get("preStop") if grace > 0 else None
        if hook and "exec" in hook:
            argv = ["nsenter", "-t", str(process.pid), "-m", "-n", "--", *hook["exec"]["command"]]
            with contextlib.suppress(subprocess.TimeoutExpired):
                subprocess.run(argv, capture_output=True, timeout=max(grace, 0.1), check=False)
        elif hook and "sleep" in hook:
            time.sleep(min(float(hook["sleep"]["seconds"]), grace))
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=max(deadline - time.monotonic(), 2.0 if grace > 0 else 0.01))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait()
        code = process.returncode
        self._exited(128 + -code if code < 0 else code, "Error" if code else "Completed")
        self.finished = self.last_state

    def _final_delete(self) -> None:
        from kubernetes import client

        meta = self.pod["metadata"]
        body = client.V1DeleteOptions(grace_period_seconds=0, preconditions=client.V1Preconditions(uid=self.uid))
        with contextlib.suppress(client.ApiException):
            client.CoreV1Api(self.kubelet.api).delete_namespaced_pod(meta["name"], meta["namespace"], body=body)
        log(f"{self.key}: deleted")

    def _teardown(self) -> None:
        if self.pod_ip:
            with contextlib.suppress(Exception):
                self.kubelet.network.remove_pod(self.pod_ip)
            self.kubelet.release_ip(self.uid)
        # The mount namespace dies with its last process; the files go with the pod.
        shutil.rmtree(self.dir, ignore_errors=True)
        self.gone.set()

    # -------------------------------------------------------------------------------- status

    def _report(self) -> None:
        from kubernetes import client

        running = self.process is not None
        ready = running and all(p.ok for k, p in self.probes.items() if k == "readiness")
        if running and "readiness" not in self.probes:
            ready = True
        now = now_rfc3339()
        image = self.container.get("image", "")
        status: dict[str, Any] = {
            "name": self.container["name"], "image": image, "imageID": "", "ready": ready,
            "restartCount": self.restarts, "started": running,
        }  # fmt: skip
        if running:
            status["state"] = {"running": {"startedAt": self.started_at}}
        elif self.finished is not None:
            status["state"] = self.finished
        else:
            status["state"] = {"waiting": {"reason": "CrashLoopBackOff"}}
        if self.last_state and (running or self.finished is None):
            status["lastState"] = self.last_state
        phase = "Running"
        if self.finished is not None and self.pod["spec"].get("restartPolicy", "Always") != "Always":
            phase = "Succeeded" if self.finished["terminated"]["exitCode"] == 0 else "Failed"
        cond = "True" if ready else "False"
        body = {
            "status": {
                "phase": phase,
                "podIP": self.pod_ip,
                "podIPs": [{"ip": self.pod_ip}],
                "hostIP": self.kubelet.host_ip,
                "hostIPs": [{"ip": self.kubelet.host_ip}],
                "startTime": self.pod.get("status", {}).get("startTime") or now,
                "conditions": [
                    {"type": "PodReadyToStartContainers", "status": "True"},
                    {"type": "Initialized", "status": "True"},
                    {"type": "ContainersReady", "status": cond, "lastTransitionTime": now},
                    {"type": "Ready", "status": cond, "lastTransitionTime": now},
                ],
                "containerStatuses": [status],
            }
        }
        meta = self.pod["metadata"]
        try:
            client.CoreV1Api(self.kubelet.api).patch_namespaced_pod_status(meta["name"], meta["namespace"], body)
        except client.ApiException as exc:
            if exc.status != 404:
                log(f"{self.key}: status update failed: {exc.status} {exc.reason}")
        log(f"{self.key}: phase {phase}, ready {ready}, restarts {self.restarts}")


# ------------------------------------------------------------------------------------------------ kubelet


class Kubelet:
    def __init__(self, args: argparse.Namespace) -> None:
        from kubernetes import config

        self.api = config.new_client_from_config(config_file=args.kubeconfig, persist_config=False)
        self.label_selector = args.label_selector
        self.network = PodNetwork(args.run_id, ipaddress.ip_network(args.subnet))
        self.apiserver_host, self.apiserver_port = args.apiserver_host, args.apiserver_port
        self.run_dir = Path(args.run_dir)
        self.repo_root = Path(__file__).resolve().parents[2]
        self.images: dict[str, list[str]] = {}
        for item in args.image:
            repo, _, entry = item.partition("=")
            self.images[repo] = entry.split()
        self.host_ip = "127.0.0.1"
        self.workers: dict[str, PodWorker] = {}
        self.ips: dict[str, str] = {}
        self.ip_lock = threading.Lock()
        self.stopping = threading.Event()

    @staticmethod
    def _repository(image: str) -> str:
        name = image.split("@", 1)[0]
        last = name.rsplit("/", 1)[-1]
        return name.rsplit(":", 1)[0] if ":" in last else name

    def entrypoint(self, image: str) -> list[str]:
        return list(self.images.get(self._repository(image), []))

    def image_env(self, image: str) -> dict[str, str]:
        """The ENV of the project's Dockerfile (the other images set none that matter here)."""
        if self._repository(image) in self.images and "flyte-resources-webhook" in self._repository(image):
            return {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"}
        return {}

    def image_paths(self, image: str) -> list[str]:
        """What the image's file system holds: its entrypoint's directory and, for the project's, the checkout."""
        entry = self.entrypoint(image)
        paths = [os.path.dirname(entry[0])] if entry and os.path.isabs(entry[0]) else []
        if "flyte-resources-webhook" in self._repository(image):
            paths.append(str(self.repo_root))
        return paths

    def image_workdir(self, image: str) -> str:
        return "/tmp" if "flyte-resources-webhook" in self._repository(image) else "/"

    def allocate_ip(self, uid: str) -> str:
        with self.ip_lock:
            taken = set(self.ips.values())
            for address in self.network.pod_ips:
                if address not in taken:
                    self.ips[uid] = address
                    return address
        raise RuntimeError(f"no pod IP left in {self.network.subnet}")

    def release_ip(self, uid: str) -> None:
        with self.ip_lock:
            self.ips.pop(uid, None)

    def sync(self) -> None:
        from kubernetes import client

        pods = client.CoreV1Api(self.api).list_pod_for_all_namespaces(label_selector=self.label_selector)
        seen = set()
        for item in pods.items:
            pod = self.api.sanitize_for_serialization(item)
            uid = pod["metadata"]["uid"]
            if not pod["spec"].get("nodeName"):
                continue  # not scheduled yet
            seen.add(uid)
            worker = self.workers.get(uid)
            if worker is None:
                if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
                    if pod["metadata"].get("deletionTimestamp"):
                        PodWorker(self, pod)._final_delete()
                    continue
                worker = self.workers[uid] = PodWorker(self, pod)
                worker.start()
            else:
                worker.update(pod)
        for uid, worker in list(self.workers.items()):
            if worker.gone.is_set():
                if uid not in seen:
                    del self.workers[uid]
            elif uid not in seen:
                worker.stop_requested.set()  # deleted with grace 0 by someone else: stop at once

    def run(self) -> None:
        log(f"stand-in kubelet: pods {self.label_selector!r}, subnet {self.network.subnet}")
        while not self.stopping.is_set():
            try:
                self.sync()
            except Exception as exc:  # the apiserver may be restarting: try again
                log(f"sync failed: {type(exc).__name__}: {exc}")
            self.stopping.wait(SYNC_INTERVAL)
        for worker in self.workers.values():
            worker.stop_requested.set()
        for worker in self.workers.values():
            worker.join(timeout=40)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m hack.cluster.kubelet", description=__doc__.split("\n")[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--label-selector", default="app.kubernetes.io/name=flyte-resources-webhook")
    parser.add_argument("--run-id", required=True, help="the PodNetwork's id (names of its bridge and namespaces)")
    parser.add_argument("--subnet", required=True, help="the pod subnet, e.g. 10.250.7.0/24")
    parser.add_argument("--apiserver-host", required=True)
    parser.add_argument("--apiserver-port", type=int, required=True)
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--image", action="append", default=[], help="REPOSITORY=ENTRYPOINT (repeatable)")
    kubelet = Kubelet(parser.parse_args(argv))

    def stop(signum: int, frame: object) -> None:
        kubelet.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    kubelet.run()


if __name__ == "__main__":
    main()
