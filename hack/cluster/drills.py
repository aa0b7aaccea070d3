"""Failure drills on the live chart's pods that need the host's view of them: signal the webhook process of a
pod (SIGKILL: a crash or an OOM kill; SIGSTOP/SIGCONT: a hung replica).

The process is found by its pod IP, not through the kubelet: a process of the pod lives in the pod's network
namespace, whose routing table (`/proc/<pid>/net/fib_trie`) holds the pod IP as a local address. So this works
whatever runs the containers, as long as it runs them on this host.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

from hack.cluster.processes import HarnessError

WEBHOOK_COMMAND = "flyte-resources-webhook"


def _holds_local_address(pid: str, ip: str) -> bool:
    try:
        lines = Path(f"/proc/{pid}/net/fib_trie").read_text().splitlines()
    except OSError:
        return False
    for i, line in enumerate(lines):
        if line.strip().endswith(f"-- {ip}") and any("host LOCAL" in nxt for nxt in lines[i + 1 : i + 3]):
            return True
    return False


def webhook_pids(pod_ip: str) -> list[int]:
    """PIDs of `flyte-resources-webhook run` processes in the network namespace that holds `pod_ip`."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [a.decode(errors="replace") for a in argv]
        if (
            any(w.endswith(WEBHOOK_COMMAND) for w in words)
            and "run" in words
            and _holds_local_address(entry.name, pod_ip)
        ):
            pids.append(int(entry.name))
    return pids


def signal_webhook(pod_ip: str, sig: signal.Signals) -> list[int]:
    """Send `sig` to the webhook process of the pod with `pod_ip`; the PIDs signalled (at least one)."""
    pids = webhook_pids(pod_ip)
    if not pids:
        raise HarnessError(f"no {WEBHOOK_COMMAND} process holds the pod IP {pod_ip}")
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    return pids
