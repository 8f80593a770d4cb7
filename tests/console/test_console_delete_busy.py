"""The console's Delete refuses, 409 with nothing deleted, while an update of the stack is in
progress (a promote or rollback run from another machine may be rolling the servers to the
version), as `llmcloud model delete` does."""

from __future__ import annotations

from tests.console.test_console_store_versions_and_logs import Outputs
from tests.console.test_console_store_versions_and_logs import cloud as cloud  # noqa: F401


def test_deleting_while_an_update_runs_is_409_and_deletes_nothing(cloud, monkeypatch):  # noqa: F811
    client, store = cloud
    monkeypatch.setattr(Outputs, "update_in_progress", lambda self: True, raising=False)
    refused = client.delete("/api/models/v4")
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["message"] == (
        "an update of stack 'prod' is in progress; v4 was not deleted")
    assert (store / "m" / "v4" / "manifest.json").is_file()
    monkeypatch.setattr(Outputs, "update_in_progress", lambda self: False, raising=False)
    assert client.delete("/api/models/v4").status_code == 200
    assert not (store / "m" / "v4").exists()
