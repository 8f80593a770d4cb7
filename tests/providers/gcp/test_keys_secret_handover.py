"""The keys secret is written by `llmcloud keys` and read by the servers (`--api-keys-file`):
each test feeds what the provider really wrote to the server's own keys-file reader, or
what the servers take to the provider, across that hand-over. (The fake Secret Manager
and the provider's fixture are `test_keys.py`'s.)"""

from __future__ import annotations

import pytest

from llmcloud.inference_image.api_keys import ApiKeys, hash_api_key
from llmcloud.stacks.errors import ConfigError
from tests.providers.gcp.test_keys import HAND_MADE, FakeSecretManager, gcp, latest  # noqa: F401

TRUNCATED = "sha256:" + "d" * 40  # a hash pasted short: the servers refuse the whole file


def servers_take(tmp_path) -> ApiKeys:
    """The keys a server holds from the latest version, as its refresher installs it."""
    path = tmp_path / "api-keys"
    path.write_bytes(FakeSecretManager.versions[-1])
    return ApiKeys.from_file(path)


def test_a_version_the_servers_would_refuse_is_never_added(gcp):  # noqa: F811
    provider, ctx, _, tmp_path = gcp
    FakeSecretManager.versions = [f"{HAND_MADE}\n{TRUNCATED}\n".encode()]  # added by hand
    with pytest.raises(ValueError):  # what the servers make of it
        servers_take(tmp_path)
    with pytest.raises(ConfigError) as refused:
        provider.keys_create(ctx, "ci")
    bad_id = "sha256-" + "d" * 12
    assert bad_id in refused.value.message
    assert refused.value.hint == f"llmcloud keys revoke {bad_id} --provider gcp --stack prod"
    assert len(FakeSecretManager.versions) == 1  # nothing the servers would refuse
    # the way out the hint names: what remains is a file the servers take again
    provider.keys_revoke(ctx, bad_id)
    made = provider.keys_create(ctx, "ci")
    assert servers_take(tmp_path).check(made["key"])
    assert TRUNCATED not in latest()


def test_a_hand_made_first_line_after_a_bom_keeps_working(gcp):  # noqa: F811
    # a version added from a file a Windows editor saved: the servers skip its BOM
    provider, ctx, _, tmp_path = gcp
    FakeSecretManager.versions = [f"\ufeff{hash_api_key('by-hand')}\n".encode()]
    assert servers_take(tmp_path).check("by-hand")
    made = provider.keys_create(ctx, "ci")
    keys = servers_take(tmp_path)
    assert keys.check("by-hand") and keys.check(made["key"])
    assert len(provider.keys_list(ctx)) == 2


def test_a_key_with_an_empty_name_is_listed_and_revoked_by_the_id_create_printed(gcp):  # noqa: F811
    provider, ctx, _, tmp_path = gcp
    made = provider.keys_create(ctx, "")
    listed = {k["id"]: k for k in provider.keys_list(ctx)}
    assert listed[made["id"]] == {"id": made["id"], "name": "", "prefix": made["prefix"],
                                  "created": made["created"], "admin": False}
    assert servers_take(tmp_path).check(made["key"])
    provider.keys_revoke(ctx, made["id"])
    assert not servers_take(tmp_path).check(made["key"])
