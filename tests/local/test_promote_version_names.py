"""A promote names a version of the stack's store, never a path: over HTTP an admin key
could name `../..` and have the replicas load any folder with a manifest."""

from __future__ import annotations

import json
import shutil

import httpx

from tests.local.conftest import auth


def test_an_admin_key_cannot_promote_a_folder_outside_the_store(fake_stack):
    stack = fake_stack(replicas=1)
    stack.up()
    admin = stack.provider.keys_create(stack.ctx(), "ops", admin=True)["key"]
    # a model folder elsewhere on the machine (here beside the store)
    outside = stack.state_file.folder / "elsewhere"
    shutil.copytree(stack.state_file.models / "fake" / "v1", outside)
    served = stack.status()["replicas"][0]["pid"]
    with httpx.Client(headers=auth(admin), timeout=30) as client:
        response = client.post(stack.url + "/admin/promote", json={"version": "../../elsewhere"})
    events = [json.loads(line) for line in response.text.splitlines()]
    assert events[-1]["event"] == "error", events
    assert "is not a model version" in events[-1]["error"]["message"]
    status = stack.status()
    assert status["model_version"] == "v1"
    assert [r["pid"] for r in status["replicas"]] == [served]
