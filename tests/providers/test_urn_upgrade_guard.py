"""Upgrading llmcloud replaces none of a deployed stack's resources unannounced: every URN
of the committed snapshot (`declared_urns.json`) is still declared, or mapped by an alias,
or listed with its reason in `urn_replacements.json`. Regenerate the snapshot with
`python -m tests.providers.urn_snapshot --write` (see that module)."""

from __future__ import annotations

import warnings

import pulumi
import pytest

with warnings.catch_warnings():  # pulumi-gcp warns about its own deprecated functions
    warnings.simplefilter("ignore", DeprecationWarning)
    import pulumi_gcp as gcp
    from pulumi_gcp.storage import Bucket

from tests.providers import urn_snapshot
from tests.providers.declared import spec_for
from tests.providers.stack_urns import (
    _Registration,
    cloud_names,
    engine_urn,
    record_urns,
    urns_with_aliases,
)

STORE = ("urn:pulumi:dev::llmcloud::llmcloud:gcp:Service$llmcloud:gcp:ModelStore"
         "$gcp:storage/bucket:Bucket::llm-dev-store-models")


def test_no_urn_of_the_snapshot_is_replaced_unannounced():
    missing = urn_snapshot.check()
    assert not missing, (
        "an upgrade would delete and recreate these resources (case: URN); alias each in its "
        "component (pulumi.ResourceOptions(aliases=[pulumi.Alias(name=<old name>)])) or give "
        f"the reason in {urn_snapshot.REPLACEMENTS.name}:\n" + "\n".join(missing))


def test_every_listed_replacement_gives_its_reason():
    for urn, reason in urn_snapshot.load(urn_snapshot.REPLACEMENTS).items():
        assert urn.startswith("urn:pulumi:") and urn.count("::") >= 3, urn
        assert isinstance(reason, str) and len(reason.split()) >= 3, (urn, reason)


def test_the_snapshot_holds_every_case():
    snapshot = urn_snapshot.load(urn_snapshot.SNAPSHOT)
    assert set(snapshot) == set(urn_snapshot.CASES)
    assert all(len(urns) > 20 for urns in snapshot.values())
    assert all(isinstance(names, dict) for urns in snapshot.values() for names in urns.values())


class _RenamedModelBucket(Bucket):
    """The model bucket under a new logical name, aliased to its old one or not."""

    aliased = False

    def __init__(self, resource_name: str, *args, opts=None, **kwargs) -> None:
        if resource_name.endswith("-store-models"):
            old, resource_name = resource_name, resource_name + "-v2"
            if self.aliased:
                opts = pulumi.ResourceOptions.merge(
                    opts, pulumi.ResourceOptions(aliases=[pulumi.Alias(name=old)]))
        super().__init__(resource_name, *args, opts=opts, **kwargs)


@pytest.mark.parametrize("aliased", [False, True])
def test_a_renamed_bucket_is_caught_unless_aliased(monkeypatch, aliased):
    monkeypatch.setattr(_RenamedModelBucket, "aliased", aliased)
    monkeypatch.setattr(gcp.storage, "Bucket", _RenamedModelBucket)
    now = record_urns(spec_for("gcp"), "dev")
    assert STORE not in now and STORE + "-v2" in now
    snapshot = {"gcp": {STORE: {}}}  # Pulumi names the bucket: no name of its own
    missing = urn_snapshot.unaccounted(snapshot, {}, {"gcp": now})
    assert missing == ([] if aliased else [f"gcp: {STORE}"])
    assert (now[STORE + "-v2"]["aliases"] == [STORE]) is aliased
    reason = {STORE: "the models move to a new bucket on purpose, by `model upload`"}
    assert urn_snapshot.unaccounted(snapshot, reason, {"gcp": now}) == []


def test_a_resource_renamed_in_its_cloud_is_caught():
    # most clouds replace a resource to rename it: a dashboard, a network, a bucket
    urn = "urn:pulumi:dev::llmcloud::aws:cloudwatch/dashboard:Dashboard::llm-dev-dashboard"
    snapshot = {"aws": {urn: {"dashboardName": "llm-dev"}}}
    now = {"aws": {urn: {"aliases": [], "names": {"dashboardName": "llm-dev-us-east-1"}}}}
    assert urn_snapshot.unaccounted(snapshot, {}, now) == [
        f"aws: {urn} (named {{'dashboardName': 'llm-dev'}} in its cloud, now "
        "{'dashboardName': 'llm-dev-us-east-1'})"]
    assert urn_snapshot.unaccounted(snapshot, {urn: "a dashboard keeps no data"}, now) == []
    kept = {"aws": {urn: {"aliases": [], "names": {"dashboardName": "llm-dev"}}}}
    assert urn_snapshot.unaccounted(snapshot, {}, kept) == []


def test_the_names_a_resource_has_in_its_cloud():
    assert cloud_names("aws:cloudwatch/dashboard:Dashboard", {
        "dashboardName": "d", "dashboardBody": "{}"}) == {"dashboardName": "d"}
    assert cloud_names("aws:s3/bucket:Bucket", {"bucketPrefix": "llm-", "tags": {}}) == {
        "bucketPrefix": "llm-"}
    assert cloud_names("azure-native:network:VirtualNetwork", {
        "virtualNetworkName": "v", "resourceGroupName": "rg"}) == {"virtualNetworkName": "v"}
    assert cloud_names("gcp:serviceaccount/account:Account", {"accountId": "a"}) == {
        "accountId": "a"}


def test_urns_chain_every_ancestor_but_the_root_stack_as_the_engine_does():
    root = "urn:pulumi:dev::p::pulumi:pulumi:Stack::p-dev"
    service = engine_urn("dev", "p", root, "x:Service", "s")
    store = engine_urn("dev", "p", service, "x:Store", "s-store")
    assert service == "urn:pulumi:dev::p::x:Service::s"
    assert engine_urn("dev", "p", store, "aws:s3/bucket:Bucket", "b") == (
        "urn:pulumi:dev::p::x:Service$x:Store$aws:s3/bucket:Bucket::b")


def test_a_child_takes_its_renamed_parents_alias():
    from pulumi.runtime.proto import alias_pb2

    def mock(type_: str, name: str) -> str:  # the mocks' short URN
        return f"urn:pulumi:dev::p::{type_}::{name}"

    renamed = alias_pb2.Alias(spec=alias_pb2.Alias.Spec(name="old"))
    registrations = [
        _Registration(mock("pulumi:pulumi:Stack", "p-dev"), "pulumi:pulumi:Stack", "p-dev",
                      "", False),
        _Registration(mock("x:Store", "new"), "x:Store", "new",
                      mock("pulumi:pulumi:Stack", "p-dev"), False, [renamed]),
        _Registration(mock("x:Store$b:Bucket", "new-models"), "b:Bucket", "new-models",
                      mock("x:Store", "new"), True),
    ]
    urns = urns_with_aliases(registrations)
    assert urns["urn:pulumi:dev::p::x:Store::new"]["aliases"] == [
        "urn:pulumi:dev::p::x:Store::old"]
    assert urns["urn:pulumi:dev::p::x:Store$b:Bucket::new-models"]["aliases"] == [
        "urn:pulumi:dev::p::x:Store$b:Bucket::old-models"]
