"""The burst's apiserver figures: metric text parsed, deltas per pod, connections counted."""

from __future__ import annotations

import socket
import time

from hack.apiserver_figures import AdmissionFigures, ConnectionCounter, parse

HOOK = "flyte-resources.flyte.org"


def _line(metric: str, value: float, **labels: str) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return f"{metric}{{{inner}}} {value}"


def _metrics(calls: float, webhook_seconds: float, passes: float, admit_seconds: float) -> str:
    hook = {"name": HOOK, "operation": "CREATE", "rejected": "false", "type": "admit"}
    webhook = "apiserver_admission_webhook_admission_duration_seconds"
    step = "apiserver_admission_step_admission_duration_seconds_sum"
    lines = [
        "# HELP apiserver_admission_webhook_request_total [ALPHA] Admission webhook request total",
        "# TYPE apiserver_admission_webhook_request_total counter",
        _line("apiserver_admission_webhook_request_total", calls, code="200", **hook),
        _line("apiserver_admission_webhook_request_total", 7, code="200", **{**hook, "operation": "UPDATE"}),
        _line(webhook + "_bucket", 3, **hook, le="0.005"),
        _line(webhook + "_sum", webhook_seconds, **hook),
        _line(webhook + "_count", calls, **hook),
        _line(
            "apiserver_admission_controller_admission_duration_seconds_count",
            passes,
            **{**hook, "name": "ExtendedResourceToleration"},
        ),
        _line(step, admit_seconds, operation="CREATE", rejected="false", type="admit"),
        _line(step, 1, operation="CREATE", rejected="false", type="validate"),
        _line("apiserver_request_total", 99, code="201", verb="POST"),
    ]
    return "\n".join(lines) + "\n"


def test_parse_keeps_admission_families_without_buckets() -> None:
    samples = parse(_metrics(10, 0.5, 30, 0.6))
    names = {name for name, _ in samples}
    assert "apiserver_request_total" not in names
    assert not any(name.endswith("_bucket") for name in names)
    key = (
        "apiserver_admission_webhook_request_total",
        tuple(
            sorted({"code": "200", "name": HOOK, "operation": "CREATE", "rejected": "false", "type": "admit"}.items())
        ),
    )
    assert samples[key] == 10


def test_figures_are_deltas_per_pod() -> None:
    before = parse(_metrics(10, 0.5, 30, 0.6))
    after = parse(_metrics(10 + 200, 0.5 + 2.0, 30 + 600, 0.6 + 3.0))
    figures = AdmissionFigures.between(before, after, pods=100)
    assert figures.webhook_calls == {HOOK: 2.0}  # a second call per pod shows as 2
    assert round(figures.webhook_ms[HOOK], 6) == 20.0
    assert figures.passes == 6.0
    assert round(figures.mutating_step_ms, 6) == 30.0
    assert figures.validating_step_ms == 0.0
    assert "2.00 calls/pod" in figures.line({})


def test_connection_counter_sees_each_connection() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        with ConnectionCounter(port, interval=0.005) as counter:
            clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
            accepted = [server.accept()[0] for _ in clients]
            time.sleep(0.1)
            for s in clients + accepted:
                s.close()
    assert len(counter.peers) == 3
