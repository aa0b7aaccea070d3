"""`run`: each mode's failures stop the process with one line and exit status 1; --dev cleans up on every exit.

The login tests run the real command in a subprocess without credentials. The --dev tests run `main()` in this
process with kopf's operator replaced by a stand-in that marks the listener up (no API server here), and with
the MutatingWebhookConfiguration calls recorded instead of sent.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import kopf
import pytest

from hack.cluster.processes import free_port
from webhook import cli
from webhook.operator import devmode
from webhook.operator.certs import generate_bundle, write_bundle
from webhook.operator.kubeapi import KubeApiError

ROOT = Path(__file__).parents[2]


def run_without_credentials(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
    env["KUBECONFIG"] = "/nonexistent/kubeconfig"
    return subprocess.run(
        [sys.executable, "-m", "webhook.cli", "run", "--addr", "127.0.0.1", "--probe-addr", "127.0.0.1",
         "--port", str(free_port()), "--probe-port", str(free_port()), *args],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=60,
    )  # fmt: skip


def test_no_credentials_stops_run_with_one_line_and_exit_1(tmp_path):
    write_bundle(generate_bundle(ip_addresses=["127.0.0.1"], dns_names=["localhost"]), tmp_path)
    done = run_without_credentials("--cert-dir", str(tmp_path))
    assert done.returncode == 1
    assert (
        done.stderr.strip().splitlines()[-1].startswith("flyte-resources-webhook: cannot log in to the Kubernetes API")
    )


def test_no_credentials_in_self_managed_mode_is_the_same_clear_failure(tmp_path):
    done = run_without_credentials(
        "--cert-mode", "self-managed", "--cert-dir", str(tmp_path), "--cert-secret", "s",
        "--webhook-config-name", "w", "--service-name", "svc", "--namespace", "ns",
    )  # fmt: skip
    assert done.returncode == 1
    assert "flyte-resources-webhook: no Kubernetes credentials" in done.stderr.strip().splitlines()[-1]
    assert "Traceback" not in done.stderr


def test_self_managed_certificate_lifetime_flags_are_checked_before_anything_starts(tmp_path):
    done = run_without_credentials(
        "--cert-mode", "self-managed", "--cert-dir", str(tmp_path), "--cert-secret", "s",
        "--webhook-config-name", "w", "--service-name", "svc", "--namespace", "ns",
        "--cert-validity", "10m", "--cert-renew-before", "1h",
    )  # fmt: skip
    assert done.returncode == 2
    assert "renew-before (1:00:00) must be shorter than the certificate validity (0:10:00)" in done.stderr
    assert "Traceback" not in done.stderr
    parser = cli.build_parser()
    args = parser.parse_args(["run", "--cert-validity", "1h30m", "--cert-renew-before", "90"])
    assert (args.cert_validity, args.cert_renew_before) == (5400, 90)
    with pytest.raises(SystemExit):
        parser.parse_args(["run", "--cert-validity", "soon"])


class Dev:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.registration_error: Exception | None = None

    def register(self, **_: object) -> None:
        self.calls.append("register")
        if self.registration_error is not None:
            raise self.registration_error

    def main(self, *args: str) -> int:
        ports = ["--port", str(free_port()), "--probe-port", str(free_port())]
        return cli.main(["run", "--dev", "--addr", "127.0.0.1", "--probe-addr", "127.0.0.1", *ports, *args])


def operator_stopping_after(seconds: float, error: Exception | None = None):
    """kopf's operator as seen from `run`: up, then stopped by a signal after `seconds` (or failing)."""

    async def operator(*, settings, stop_flag, **_):
        settings.admission.server.listening.set()
        try:
            await asyncio.wait_for(stop_flag.wait(), timeout=seconds)
        except TimeoutError:
            if error is not None:
                raise error from None

    return operator


@pytest.fixture
def dev(monkeypatch):
    """`run --dev` in this process: a stand-in operator, recorded registrations and removals."""
    dev = Dev()
    monkeypatch.setattr(kopf, "operator", operator_stopping_after(30))
    monkeypatch.setattr(devmode, "register_dev_webhook", dev.register)
    monkeypatch.setattr(devmode, "unregister_dev_webhook", lambda **_: dev.calls.append("unregister"))
    return dev


def test_dev_registration_failure_stops_run_with_its_message_and_cleans_up(dev, capsys):
    dev.registration_error = KubeApiError("cannot register MutatingWebhookConfiguration x: HTTP 403 Forbidden")
    assert dev.main() == 1
    assert (
        capsys.readouterr().err.strip().endswith("cannot register MutatingWebhookConfiguration x: HTTP 403 Forbidden")
    )
    assert dev.calls == ["register", "unregister"]


def test_dev_configuration_is_removed_when_the_server_fails(dev, monkeypatch, capsys):
    monkeypatch.setattr(kopf, "operator", operator_stopping_after(0.3, RuntimeError("listener died")))
    assert dev.main() == 1
    assert "listener died" in capsys.readouterr().err
    assert dev.calls == ["register", "unregister"]


def test_dev_configuration_is_removed_when_run_is_stopped(dev, monkeypatch):
    monkeypatch.setattr(kopf, "operator", operator_stopping_after(0.3))
    assert dev.main() == 0
    assert dev.calls == ["register", "unregister"]
