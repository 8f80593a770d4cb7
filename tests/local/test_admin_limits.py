"""The gateway's per-key limits hold for management requests (`/admin/*`) too."""

from __future__ import annotations

import httpx

from tests.local.conftest import auth


def test_an_admin_key_is_held_to_its_rate_limit(fake_stack):
    stack = fake_stack(replicas=1, gateway__rate_limit=0.01, gateway__burst=3)
    stack.up()
    admin = stack.provider.keys_create(stack.ctx(), "ops", admin=True)["key"]
    with httpx.Client(headers=auth(admin), timeout=10) as client:
        # each POST writes a key to the state file: before, an admin key could make keys
        # (and rewrite the file) as fast as it could send, past any limit the spec set
        codes = [client.post(stack.url + "/admin/keys", json={"name": f"k{n}"}).status_code
                 for n in range(6)]
        assert codes == [201, 201, 201, 429, 429, 429]
        limited = client.get(stack.url + "/admin/status")
        assert limited.status_code == 429
        assert limited.json()["error"]["code"] == "rate_limit_exceeded"
        assert int(limited.headers["retry-after"]) >= 1
    assert len(stack.provider.keys_list(stack.ctx())) == 2 + 3
