"""The bounded form of `make fuzz`: hostile AdmissionReviews against the running HTTPS server.

The server runs in its own process as `run` builds it (`hack.webhook_process`). Each review must be answered
within the time budget, never with a 5xx, and (when it is an AdmissionReview) with a valid `admission.k8s.io/v1`
AdmissionReview; other bodies get a 400, other paths a 404. The budget is generous (the chart's webhook timeout
is 2 s to 5 s): it catches a review that stalls the server, not a slow machine; speed is `make fuzz`'s job.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import random
import ssl
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hack.fuzz import (
    HANDLER_PATH,
    NAMES,
    POLICY_CONFIG,
    Case,
    P,
    Report,
    annotation_value,
    base_review,
    drive,
    fuzz_case,
    policy_case,
    reply_problem,
)
from hack.webhook_process import running_server

BUDGET_SECONDS = 2.0


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("fuzz")) as running:
        yield running


class Client:
    """One keep-alive HTTPS connection, reopened after the server closes it."""

    def __init__(self, port: int, ca_file: Path) -> None:
        self.port = port
        self.context = ssl.create_default_context(cafile=str(ca_file))
        self.connection: http.client.HTTPSConnection | None = None

    def post(self, path: str, body: bytes) -> tuple[int, str, bytes]:
        for attempt in range(2):
            if self.connection is None:
                self.connection = http.client.HTTPSConnection(
                    "127.0.0.1", self.port, context=self.context, timeout=BUDGET_SECONDS
                )
            try:
                self.connection.request("POST", f"/{path}", body=body, headers={"Content-Type": "application/json"})
                reply = self.connection.getresponse()
                return reply.status, reply.reason, reply.read()
            except (ConnectionError, http.client.RemoteDisconnected, http.client.CannotSendRequest):
                self.connection.close()
                self.connection = None
                if attempt:
                    raise
        raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def client(server):
    return Client(server.port, server.ca_file)


def check(client: Client, case: Case) -> None:
    status, reason, body = client.post(case.path, case.body)
    problem = reply_problem(case, status, body, reason)
    assert problem is None, f"{problem} for {case.kind} body {case.body[:300]!r}"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
FIELDS = ("uid", "object", "operation", "namespace", "name", "kind", "dryRun", "userInfo")
POD_FIELDS = ("metadata", "spec", "apiVersion", "kind", "status")


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    field=st.sampled_from(FIELDS),
    pod_field=st.sampled_from(POD_FIELDS),
    value=json_values,
    annotation=st.sampled_from(NAMES),
    text=st.text(max_size=300),
)
def test_any_json_in_any_field_or_annotation_gets_a_valid_review(client, field, pod_field, value, annotation, text):
    review = base_review(random.Random(0), {P + annotation: text})
    check(client, Case(HANDLER_PATH, json.dumps(review).encode(), "review", "annotation text"))
    broken = base_review(random.Random(0), {P + annotation: text})
    broken["request"][field] = value
    check(client, Case(HANDLER_PATH, json.dumps(broken).encode(), "review", f"request.{field}"))
    pod = base_review(random.Random(0), {P + annotation: "cpu=1"})
    pod["request"]["object"][pod_field] = value
    check(client, Case(HANDLER_PATH, json.dumps(pod).encode(), "review", f"object.{pod_field}"))
    annotated = base_review(random.Random(0), {P + annotation: value})
    check(client, Case(HANDLER_PATH, json.dumps(annotated).encode(), "review", "non-string annotation"))


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(rng=st.randoms(use_true_random=False), annotation=st.sampled_from(NAMES))
def test_generated_annotation_values_up_to_and_over_the_cap(client, rng, annotation):
    review = base_review(rng, {P + annotation: annotation_value(rng, annotation)})
    check(client, Case(HANDLER_PATH, json.dumps(review).encode(), "review", annotation))


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=st.binary(max_size=200) | st.builds(lambda v: json.dumps(v).encode(), json_values))
def test_bodies_that_are_not_admission_reviews_get_400(client, body):
    try:
        value = json.loads(body)
    except ValueError:
        value = None
    if isinstance(value, dict) and isinstance(value.get("request"), dict):
        return  # an AdmissionReview after all: covered above
    check(client, Case(HANDLER_PATH, body, "bad", "not a review"))


def test_two_thousand_cases_of_make_fuzz(server):
    """The tool itself, bounded: the same generator and checks as `make fuzz`, over concurrent connections."""
    rng = random.Random(20261201)
    cases = [fuzz_case(rng) for _ in range(2000)]
    report = Report()
    base = server.url("").rstrip("/")
    asyncio.run(drive(base, server.ca_file, iter(cases), concurrency=4, timeout=BUDGET_SECONDS, report=report))
    assert report.sent == len(cases)
    assert (report.http_500, report.invalid, report.errors) == (0, 0, 0), dict(report.problems or {})


@pytest.fixture(scope="module")
def policy_server(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("fuzz-policies"), POLICY_CONFIG) as running:
        yield running


def test_two_thousand_cases_of_make_fuzz_with_policies(policy_server):
    """`make fuzz --config examples/config/policies.yaml`, bounded: policies read a pod's own quantities (GPU counts
    of 1e999999 once stalled every replica and answered code 500), labels and node selection."""
    rng = random.Random(20261203)
    cases = [fuzz_case(rng) for _ in range(1500)] + [policy_case(rng) for _ in range(500)]
    report = Report()
    base = policy_server.url("").rstrip("/")
    asyncio.run(drive(base, policy_server.ca_file, iter(cases), concurrency=4, timeout=BUDGET_SECONDS, report=report))
    assert report.sent == len(cases)
    assert (report.http_500, report.invalid, report.errors) == (0, 0, 0), dict(report.problems or {})
