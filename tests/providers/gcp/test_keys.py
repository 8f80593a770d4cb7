"""`llmcloud keys` on GCP: key hashes in the stack's Secret Manager secret, which is the
servers' keys file. The provider's real session talks to a fake Secret Manager on
loopback; what it writes is read back by the server's own keys-file reader."""

from __future__ import annotations

import base64

import google_crc32c
import pytest

from llmcloud.inference_image.api_keys import ApiKeys
from llmcloud.providers.gcp import api_keys
from llmcloud.stacks.errors import ConfigError, DeploymentError
from tests.providers.fakes import JsonApi, Outputs, serving

SECRET = "llm-prod-api-keys"
HAND_MADE = "sha256:" + "c" * 64  # a hash added with gcloud before `keys` came to GCP


#: the project's number, which Secret Manager names versions by (not the project's id)
NUMBERED = f"projects/123456789/secrets/{SECRET}/versions"


class FakeSecretManager(JsonApi):
    """Secret Manager's access, addVersion, versions.list (two to a page) and destroy for
    one secret, versions kept in order (version n at index n-1), each with its state."""

    versions: list[bytes] = []
    states: list[str] = []
    asked: list[tuple[str, str]] = []
    may_destroy = True

    def do_GET(self):  # noqa: N802 - http.server's name
        type(self).asked.append(("GET", self.path))
        path, _, query = self.path.partition("?")
        if path.endswith(f"/projects/my-proj/secrets/{SECRET}/versions"):
            return self._list(dict(p.split("=", 1) for p in query.split("&") if p))
        if not path.endswith(f"/projects/my-proj/secrets/{SECRET}/versions/latest:access"):
            return self.answer(404, {"error": {"message": "no such secret"}})
        if not self.versions:
            return self.answer(404, {"error": {"message": "Secret has no versions"}})
        if self.states[-1] != "ENABLED":  # `latest` is the newest version, whatever its state
            return self.answer(400, {"error": {"message": "is in DESTROYED state"}})
        data = self.versions[-1]
        self.answer(200, {"name": f"{NUMBERED}/{len(self.versions)}", "payload": {
            "data": base64.b64encode(data).decode(),
            "dataCrc32c": str(google_crc32c.value(data))}})

    def _list(self, query: dict[str, str]):
        newest_first = [{"name": f"{NUMBERED}/{n}", "state": self.states[n - 1]}
                        for n in range(len(self.versions), 0, -1)]
        start = int(query.get("pageToken", "0"))
        page = {"versions": newest_first[start:start + 2]}
        if start + 2 < len(newest_first):
            page["nextPageToken"] = str(start + 2)
        self.answer(200, page)

    def do_POST(self):  # noqa: N802
        type(self).asked.append(("POST", self.path))
        prefix = f"/projects/my-proj/secrets/{SECRET}"
        if f"{prefix}/versions/" in self.path and self.path.endswith(":destroy"):
            return self._destroy(self.path.rsplit("/", 1)[1].removesuffix(":destroy"))
        body = self.body()
        data = base64.b64decode(body["payload"]["data"])
        if str(google_crc32c.value(data)) != body["payload"]["dataCrc32c"]:
            return self.answer(400, {"error": {"message": "checksum mismatch"}})
        if self.path.endswith(f"{prefix}:addVersion"):
            type(self).versions.append(data)
            type(self).states.append("ENABLED")
            return self.answer(200, {"name": f"{NUMBERED}/{len(self.versions)}",
                                     "state": "ENABLED"})
        self.answer(403, {"error": {"message": "Permission 'secretmanager.versions.add' "
                                                "denied"}})

    def _destroy(self, number: str):
        self.body()
        if not self.may_destroy:
            return self.answer(403, {"error": {"message": "Permission "
                                                          "'secretmanager.versions.destroy' "
                                                          "denied"}})
        index = int(number) - 1
        if not 0 <= index < len(self.versions) or self.states[index] == "DESTROYED":
            return self.answer(400, {"error": {"message": "already destroyed"}})
        type(self).states[index] = "DESTROYED"
        self.answer(200, {"name": f"{NUMBERED}/{number}", "state": "DESTROYED"})


@pytest.fixture
def gcp(monkeypatch, tmp_path):
    import google.auth
    from google.auth.credentials import AnonymousCredentials

    from llmcloud.providers.base import StackContext
    from llmcloud.providers.gcp.provider import GcpProvider
    from tests.providers.gcp.helpers import gcp_spec

    FakeSecretManager.versions = [f"{HAND_MADE}\n".encode()]
    FakeSecretManager.states = ["ENABLED"]
    FakeSecretManager.asked = []
    FakeSecretManager.may_destroy = True
    monkeypatch.setattr(google.auth, "default",
                        lambda scopes: (AnonymousCredentials(), "adc-project"))
    outputs = {"api_keys_secret": SECRET}
    monkeypatch.setattr(GcpProvider, "_engine", lambda self, ctx, operation: Outputs(outputs))
    key_file = tmp_path / "adc.json"
    key_file.write_text("{}")
    with serving(FakeSecretManager) as url:
        environ = {"GOOGLE_APPLICATION_CREDENTIALS": str(key_file),
                   "GOOGLE_CLOUD_PROJECT": "my-proj", api_keys.ENDPOINT_OVERRIDE: f"{url}/v1/"}
        yield GcpProvider(), StackContext(tmp_path, "prod", gcp_spec(), environ=environ), \
            outputs, tmp_path


def latest() -> str:
    return FakeSecretManager.versions[-1].decode()


def server_keys(tmp_path) -> ApiKeys:
    """The keys a server holds once its refresher has put the latest version in place."""
    path = tmp_path / "api-keys"
    path.write_text(latest())
    return ApiKeys.from_file(path)


def test_a_new_key_is_a_hash_the_servers_accept_and_is_shown_once(gcp):
    provider, ctx, _, tmp_path = gcp
    made = provider.keys_create(ctx, "ci pipeline")
    key = made["key"]
    assert key.startswith("llmc-") and made["prefix"] == key[:9] and made["admin"] is False
    assert key not in latest()  # only its hash is kept
    keys = server_keys(tmp_path)
    assert keys.check(key) and not keys.check(key + "x")
    assert HAND_MADE in latest()  # what was there stays
    assert len(FakeSecretManager.versions) == 2
    assert ("GET", f"/v1/projects/my-proj/secrets/{SECRET}/versions/latest:access") in \
        FakeSecretManager.asked


def test_keys_are_listed_by_id_name_and_prefix_never_by_hash(gcp):
    provider, ctx, _, _ = gcp
    made = provider.keys_create(ctx, "team a")
    listed = provider.keys_list(ctx)
    assert [k["id"] for k in listed] == ["sha256-cccccccccccc", made["id"]]
    assert listed[1] == {"id": made["id"], "name": "team a", "prefix": made["prefix"],
                         "created": made["created"], "admin": False}
    assert "sha256:" not in repr(listed)


def test_a_revoked_key_leaves_the_secret_and_the_servers(gcp):
    provider, ctx, _, tmp_path = gcp
    first, second = provider.keys_create(ctx, "a"), provider.keys_create(ctx, "b")
    assert provider.keys_revoke(ctx, first["id"])["revoked"] is True
    keys = server_keys(tmp_path)
    assert not keys.check(first["key"]) and keys.check(second["key"])
    assert provider.keys_revoke(ctx, "sha256-cccccccccccc")["revoked"] is True  # by hand
    assert [k["id"] for k in provider.keys_list(ctx)] == [second["id"]]


def test_the_last_key_and_unknown_ids_are_not_revoked(gcp):
    provider, ctx, _, _ = gcp
    with pytest.raises(ConfigError) as last:
        provider.keys_revoke(ctx, "sha256-cccccccccccc")
    assert "last API key" in last.value.message
    with pytest.raises(ConfigError) as unknown:
        provider.keys_revoke(ctx, "key-00000000")
    assert unknown.value.message == "stack 'prod' has no API key key-00000000"
    assert len(FakeSecretManager.versions) == 1


def test_only_the_latest_version_stays_billed_after_key_changes(gcp):
    # Secret Manager bills every version not destroyed (disabled ones too), and an old
    # version keeps the hash of a key revoked since
    provider, ctx, _, tmp_path = gcp
    first = provider.keys_create(ctx, "a")
    second = provider.keys_create(ctx, "b")
    provider.keys_revoke(ctx, first["id"])
    provider.keys_create(ctx, "c")  # five versions: more than one page of the list
    assert FakeSecretManager.states == ["DESTROYED"] * 4 + ["ENABLED"]
    keys = server_keys(tmp_path)  # what `latest` gives the servers
    assert keys.check(second["key"]) and not keys.check(first["key"])
    assert [k["name"] for k in provider.keys_list(ctx)] == ["", "b", "c"]


def test_a_refused_destroy_keeps_the_new_key_and_warns(gcp, caplog):
    provider, ctx, _, tmp_path = gcp
    FakeSecretManager.may_destroy = False
    made = provider.keys_create(ctx, "ci")  # the key is still shown, once
    assert server_keys(tmp_path).check(made["key"])
    assert FakeSecretManager.states == ["ENABLED", "ENABLED"]
    assert "not destroyed and are still billed" in caplog.text
    assert "secretmanager.versions.destroy" in caplog.text


def test_a_first_key_goes_into_an_empty_secret(gcp):
    provider, ctx, _, tmp_path = gcp
    FakeSecretManager.versions = []  # as `up` leaves it: the servers wait for a hash
    FakeSecretManager.states = []
    made = provider.keys_create(ctx, "first")
    assert server_keys(tmp_path).check(made["key"])
    assert [k["id"] for k in provider.keys_list(ctx)] == [made["id"]]


def test_admin_keys_are_refused_on_gcp(gcp):
    provider, ctx, _, _ = gcp
    with pytest.raises(ConfigError, match="local provider only"):
        provider.keys_create(ctx, "ops", admin=True)
    assert len(FakeSecretManager.versions) == 1


def test_a_refusal_names_secret_managers_message(gcp):
    provider, ctx, outputs, _ = gcp
    outputs["api_keys_secret"] = "someone-elses"  # reads as empty, refuses new versions
    assert provider.keys_list(ctx) == []
    with pytest.raises(DeploymentError) as failed:
        provider.keys_create(ctx, "ci")
    assert failed.value.message == ("Secret Manager answered HTTP 403 adding a version to "
                                    "the keys secret")
    assert "secretmanager.versions.add" in failed.value.context


def test_a_stack_without_the_secret_says_to_run_up(gcp):
    provider, ctx, outputs, _ = gcp
    outputs.pop("api_keys_secret")
    with pytest.raises(DeploymentError) as missing:
        provider.keys_create(ctx, "ci")
    assert missing.value.hint == "llmcloud up --provider gcp --stack prod"


def test_a_change_that_another_keeps_overtaking_is_reported():
    class Racing:
        """A secret whose latest version is always someone else's."""

        def __init__(self):
            self.writes = 0

        def read(self):
            return f"{HAND_MADE}\n"

        def write(self, text):
            self.writes += 1

    secret = Racing()
    with pytest.raises(DeploymentError, match="kept changing"):
        api_keys.create(secret, "prod", "ci")
    assert secret.writes == api_keys.ATTEMPTS


def test_names_with_spaces_and_hand_made_lines_survive_a_round_trip():
    entries = [{"id": "key-1", "name": "team a / ci", "prefix": "llmc-abcd", "created": 5,
                "hash": "sha256:" + "a" * 64},
               {"id": "sha256-cccccccccccc", "name": "", "prefix": None, "created": None,
                "hash": HAND_MADE}]
    assert api_keys.parse(api_keys.render(entries, "prod")) == entries
