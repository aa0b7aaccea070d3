"""Options for the whole suite: registered here so `pytest --existing-cluster` works from the repository root;
the hypothesis profiles.

Property tests run derandomized (profile `ci`, the default): the same examples on every run, so CI never fails on
a new random find; every example a run ever found is kept as an explicit `@example`. `make explore` runs them
with the profile `explore` (random, its finds stored in .hypothesis/ and replayed first) to look for new ones.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

from hack.cluster.chart import WEBHOOK_NAMESPACE

settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile(os.environ.get("FRW_HYPOTHESIS_PROFILE", "ci"))


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
