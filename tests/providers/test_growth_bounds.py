"""A cloud stack after a year of weekly promotes: old model blob versions are deleted by
the cloud's own policy, not kept (and billed) forever."""

from __future__ import annotations

from tests.providers.declared import declared_for, one


def test_azure_previous_blob_versions_expire():
    resources, _ = declared_for("azure")
    account = one(resources, "azure-native:storage:StorageAccount")
    policy = one(resources, "azure-native:storage:ManagementPolicy")
    assert policy.inputs["managementPolicyName"] == "default"
    assert policy.inputs["accountName"] == account.inputs["accountName"]
    rules = [r for r in policy.inputs["policy"]["rules"] if r["enabled"]]
    days = [r["definition"]["actions"]["version"]["delete"]["daysAfterCreationGreaterThan"]
            for r in rules if "version" in r["definition"]["actions"]]
    assert days and max(days) <= 90
    blob = one(resources, "azure-native:storage:BlobServiceProperties")
    assert blob.inputs["isVersioningEnabled"] is True  # what makes the rule needed
