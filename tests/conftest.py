"""Options for the whole suite: registered here so `pytest --existing-cluster` works from the repository root."""

from __future__ import annotations

import pytest

from hack.cluster.chart import WEBHOOK_NAMESPACE


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("flyte-resources-webhook e2e")
    group.addoption(
        "--existing-cluster",
        action="store_true",
        default=False,
        help="run the e2e tests against $KUBECONFIG's cluster, where the chart is already installed, instead of "
        "starting a local etcd + kube-apiserver (also: FRW_E2E_EXISTING_CLUSTER=1)",
    )
    group.addoption(
        "--webhook-namespace",
        default=WEBHOOK_NAMESPACE,
        help="with --existing-cluster: the namespace the chart is installed in (default: %(default)s)",
    )
