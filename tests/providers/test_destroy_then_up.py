"""`llmcloud destroy` and then `up` of a stack of the same name: what a destroy leaves
behind or keeps reserved must not break the next `up` (asserted on what the program
declares under Pulumi's mocks, and on the engine's errors as the clouds word them)."""

from __future__ import annotations

import pytest
from pulumi import automation as auto

from llmcloud.stacks.automation import translate_command_error
from llmcloud.stacks.errors import DeploymentError
from tests.providers.declared import declared_for, one

KEY = "aws:kms/key:Key"
BUCKET = "aws:s3/bucket:Bucket"
APIM = "azure-native:apimanagement:ApiManagementService"


@pytest.mark.parametrize("compute", [{}, {"kind": "sagemaker"}], ids=["instances", "sagemaker"])
def test_aws_model_key_outlives_a_destroy_that_stops_at_the_model_bucket(compute):
    # A destroy stops at the model bucket while it holds models (the user's to delete).
    # With no dependency between them, the engine scheduled the bucket's KMS key for
    # deletion in that same destroy: a key pending deletion decrypts nothing, so the kept
    # models, and what the next `up` (a new key, the same bucket) serves, were unreadable.
    resources, _ = declared_for("aws", "dev", compute=compute)
    key = one(resources, KEY, "store-key")
    bucket = one(resources, BUCKET, "store-models")
    assert key.name in bucket.depends_on


def _azure_create_failure(service: str) -> auto.CommandError:
    # as the Pulumi engine reports Azure's answer to creating a soft-deleted service's name
    return auto.CommandError(auto.CommandResult(stdout="", code=255, stderr=(
        "error: update failed\n"
        f"  azure-native:apimanagement:ApiManagementService (llm-dev-gateway-apim):\n"
        f"    error: Code=\"ServiceAlreadyExistsInSoftDeletedState\" Message=\"Api service "
        f"{service} was soft-deleted. In order to create the new service with the same name, "
        "you have to either undelete the service or purge it. See "
        "https://aka.ms/apimsoftdelete.\"\n")))


def test_azure_up_after_destroy_names_the_purge_that_frees_the_gateways_name():
    # The stack's API Management name is the same at every `up` (naming.global_name), and
    # Azure keeps a deleted service soft-deleted for 48 hours with its name blocked: the
    # `up` after a destroy failed with "the Pulumi engine failed ... run with --debug".
    resources, _ = declared_for("azure", "dev")
    service = one(resources, APIM).inputs["serviceName"]
    translated = translate_command_error(_azure_create_failure(service), "dev")
    assert isinstance(translated, DeploymentError)
    assert service in translated.message and "soft-deleted" in translated.message
    assert (f"az apim deletedservice purge --service-name {service} --location"
            in translated.hint)
    assert "llmcloud up --provider azure --stack dev" in translated.hint
    assert "48 hours" in translated.context


def test_gcp_destroy_leaves_the_storage_agents_grant_on_a_shared_kms_key(monkeypatch):
    # With `GcpOptions.kms_key`, each stack grants the project's one Cloud Storage agent
    # the key (the same role and member): one stack's destroy revoked it for every other
    # stack of the project on that key, whose buckets could then neither read nor write.
    from llmcloud.providers.gcp.provider import GcpProvider
    from llmcloud.providers.gcp.service import GcpOptions
    from llmcloud.stacks.plan import declare
    from tests.providers.declared import spec_for

    key = "projects/p/locations/us-central1/keyRings/llm/cryptoKeys/models"
    monkeypatch.setattr(GcpProvider, "options", GcpOptions(kms_key=key))
    resources, _ = declare(spec_for("gcp"), "dev")
    grant = one(resources, "gcp:kms/cryptoKeyIAMMember:CryptoKeyIAMMember", "cmek")
    assert grant.inputs["cryptoKeyId"] == key
    assert grant.retain_on_delete
    # what depends on the key still waits for the grant
    for bucket in ("store-models", "store-logs"):
        assert grant.name in one(resources, "gcp:storage/bucket:Bucket", bucket).depends_on
