"""`serve` runs a mode's parts around the server and lets no failure pass: each stops the server and is raised,
and `cleanup` runs on every exit. kopf's operator is replaced by a stand-in (no API server here) that marks the
listener up, as kopf does once the TLS site is bound, and runs until its stop flag is set or it fails."""

from __future__ import annotations

import asyncio

import kopf
import pytest

from hack.cluster.processes import free_port
from webhook.engine.config import WebhookConfig
from webhook.operator.server import Lifecycle, ServerOptions, serve


class Boom(Exception):
    pass


@pytest.fixture
def operator(monkeypatch):
    """A stand-in for kopf.operator; `.fail` makes it raise once listening, `.calls` records each run."""

    class StandIn:
        def __init__(self) -> None:
            self.fail: BaseException | None = None
            self.calls: list[str] = []

        async def __call__(self, *, settings, stop_flag, **_):
            self.calls.append("started")
            settings.admission.server.listening.set()
            if self.fail is not None:
                raise self.fail
            await stop_flag.wait()
            self.calls.append("stopped")

    stand_in = StandIn()
    monkeypatch.setattr(kopf, "operator", stand_in)
    return stand_in


def options(tmp_path):  # no TLS files: the stand-in never starts the listener
    return ServerOptions(addr="127.0.0.1", port=free_port(), probe_addr="127.0.0.1", probe_port=free_port())


def run(tmp_path, lifecycle: Lifecycle, stop: asyncio.Event | None = None) -> None:
    asyncio.run(serve(WebhookConfig.from_mapping({}), options(tmp_path), stop_flag=stop, lifecycle=lifecycle))


def recording(calls: list[str], name: str, error: BaseException | None = None):
    async def part(*_):
        calls.append(name)
        if error is not None:
            raise error

    return part


def test_a_failing_when_listening_stops_the_server_is_raised_and_cleaned_up(tmp_path, operator):
    calls: list[str] = []
    lifecycle = Lifecycle(when_listening=recording(calls, "register", Boom("no")), cleanup=recording(calls, "cleanup"))
    with pytest.raises(Boom):
        run(tmp_path, lifecycle)
    assert calls == ["register", "cleanup"]
    assert operator.calls == ["started", "stopped"], "the server stops gracefully before the failure is raised"


def test_a_failing_background_part_stops_the_server_too(tmp_path, operator):
    calls: list[str] = []
    lifecycle = Lifecycle(background=recording(calls, "rotate", Boom("no")), cleanup=recording(calls, "cleanup"))
    with pytest.raises(Boom):
        run(tmp_path, lifecycle)
    assert calls == ["rotate", "cleanup"] and operator.calls == ["started", "stopped"]


def test_a_failing_server_is_raised_after_cleanup(tmp_path, operator):
    operator.fail = kopf.LoginError("no credentials")
    calls: list[str] = []
    with pytest.raises(kopf.LoginError):
        run(tmp_path, Lifecycle(cleanup=recording(calls, "cleanup")))
    assert calls == ["cleanup"]


def test_a_failing_prepare_never_starts_the_server(tmp_path, operator):
    calls: list[str] = []
    with pytest.raises(Boom):
        run(tmp_path, Lifecycle(prepare=recording(calls, "prepare", Boom("no")), cleanup=recording(calls, "cleanup")))
    assert calls == ["prepare", "cleanup"] and operator.calls == []


def test_a_stop_runs_cleanup_and_returns(tmp_path, operator):
    calls: list[str] = []

    async def scenario():
        stop = asyncio.Event()

        async def when_listening():
            calls.append("registered")
            stop.set()  # as a signal would, once up

        lifecycle = Lifecycle(when_listening=when_listening, cleanup=recording(calls, "cleanup"))
        await serve(WebhookConfig.from_mapping({}), options(tmp_path), stop_flag=stop, lifecycle=lifecycle)

    asyncio.run(scenario())
    assert calls == ["registered", "cleanup"] and operator.calls == ["started", "stopped"]
