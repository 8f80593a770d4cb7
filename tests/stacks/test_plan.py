"""`run_plan`: the contract the CLI relies on, offline, repeatable, without leaking state."""

from __future__ import annotations

import json

import pulumi
import pytest

from llmcloud.providers.aws.provider import AwsProvider
from llmcloud.stacks.errors import MissingToolError, NotSupportedError, install_hint
from llmcloud.stacks.plan import layer_of, run_plan
from tests.providers.aws_helpers import aws_spec


@pytest.fixture(scope="module")
def doc():
    return run_plan(aws_spec(), "ci")


def test_plan_document_matches_the_contract(doc):
    assert set(doc) == {"provider", "stack", "resources", "checks", "cost", "budget", "outputs",
                        "warnings"}
    assert (doc["provider"], doc["stack"]) == ("aws", "ci")
    json.dumps(doc)
    types = {r["type"] for r in doc["resources"]}
    assert "aws:ec2/launchTemplate:LaunchTemplate" in types
    assert "aws:apigateway/restApi:RestApi" in types
    assert not [t for t in types if t.startswith(("pulumi:", "llmcloud:"))]
    assert all(set(c) == {"id", "resource", "passed", "message"} for c in doc["checks"])
    cost = doc["cost"]
    assert {"currency", "hourly_min", "hourly_max", "items", "price_date", "source"} <= set(cost)
    for item in cost["items"]:
        assert {"name", "unit", "quantity_min", "quantity_max", "hourly_min",
                "hourly_max"} <= set(item)
    assert doc["budget"] == {"max_hourly_usd": None, "exceeded": False}
    assert doc["outputs"]["image_placeholder"] is True
    assert doc["outputs"]["image"].endswith("@sha256:" + "0" * 64)


def test_plan_is_repeatable(doc):
    again = run_plan(aws_spec(), "ci")
    assert again == doc


def test_budget_exceeded_is_reported_with_the_numbers():
    doc = run_plan(aws_spec(budget={"max_hourly_usd": 0.5}), "ci")
    assert doc["budget"] == {"max_hourly_usd": 0.5, "exceeded": True}
    assert doc["cost"]["hourly_max"] > 0.5


def test_a_pinned_image_is_used_as_is():
    image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/r@sha256:" + "c" * 64
    doc = run_plan(aws_spec(image=image), "ci")
    assert doc["outputs"]["image"] == image and "image_placeholder" not in doc["outputs"]


def test_providers_without_plan_say_so():
    spec = aws_spec().model_copy(update={"provider": "local"})
    with pytest.raises(NotSupportedError) as info:
        run_plan(spec, "ci")
    assert info.value.exit_code == 4 and "creates no cloud resources" in info.value.context


def test_a_missing_sdk_names_the_extra(monkeypatch):
    monkeypatch.setattr(AwsProvider, "sdk_modules", ("pulumi_aws_not_installed",))
    with pytest.raises(MissingToolError) as info:
        run_plan(aws_spec(), "ci")
    assert info.value.hint == install_hint("aws")
    assert "[aws]" in info.value.hint


def test_layer_names():
    assert layer_of("llmcloud:aws:GpuPool") == "gpu_pool"
    assert layer_of("llmcloud:gcp:LoadBalancer") == "load_balancer"


class _Mocks(pulumi.runtime.Mocks):
    def new_resource(self, args):
        return f"{args.name}-own", {**args.inputs, "own": True}

    def call(self, args):
        return {}


def test_a_unit_test_with_its_own_mocks_runs_after_a_plan(doc):
    import pulumi_aws as aws

    pulumi.runtime.set_mocks(_Mocks(), project="other", stack="unit", preview=False)

    @pulumi.runtime.test
    def check():
        bucket = aws.s3.Bucket("mine")
        return pulumi.Output.all(bucket.id, bucket.urn).apply(lambda v: (
            v[0] == "mine-own" or pytest.fail(v[0]),
            "::other::" in v[1] or pytest.fail(v[1])))

    check()
    run_plan(aws_spec(), "ci")
    check()


@pytest.mark.parametrize("collecting", [True, False])
def test_a_plan_leaves_the_collector_and_pulumi_as_it_found_them(collecting):
    import gc

    from pulumi.runtime import resource

    trace = resource._get_stack_trace
    seen = {}
    real_declare = AwsProvider.declare_service

    def spy(self, spec, stack):
        seen["collecting"] = gc.isenabled()
        seen["trace"] = resource._get_stack_trace
        return real_declare(self, spec, stack)

    was = gc.isenabled()
    (gc.enable if collecting else gc.disable)()
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(AwsProvider, "declare_service", spy)
            run_plan(aws_spec(), "ci")
        assert gc.isenabled() is collecting
    finally:
        (gc.enable if was else gc.disable)()
    assert seen["collecting"] is False and seen["trace"] is not trace
    assert resource._get_stack_trace is trace


def test_plans_in_threads_leave_the_process_as_they_found_it():
    import gc
    from concurrent.futures import ThreadPoolExecutor

    from pulumi.runtime import resource

    trace = resource._get_stack_trace
    with ThreadPoolExecutor(3) as pool:
        docs = list(pool.map(lambda _: run_plan(aws_spec(), "ci"), range(3)))
    assert all(all(c["passed"] for c in d["checks"]) for d in docs)
    assert len({json.dumps(d["resources"], sort_keys=True) for d in docs}) == 1
    assert resource._get_stack_trace is trace and gc.isenabled()


def test_secrets_show_as_pulumi_shows_them():
    # the GCP stack's self-signed certificate: its key is a secret (made up by the mocks
    # here, but a plan must not print secrets, nor Pulumi's wrapper around them)
    from llmcloud.stacks.config import resolve_spec

    doc = run_plan(resolve_spec(file_values={"provider": "gcp"}, environ={}), "ci")
    (certificate,) = [r for r in doc["resources"]
                      if r["type"] == "tls:index/selfSignedCert:SelfSignedCert"]
    assert certificate["inputs"]["privateKeyPem"] == "[secret]"
    assert "4dabf18193072939515e22adb298388d" not in json.dumps(doc)
