"""`llmcloud keys` on a local stack whose gateway is not running: the state file alone.
A revoke answers with the key it took away, as `keys list` showed it (and as the running
controller answers), so the output says which key went."""

from __future__ import annotations


def test_an_offline_revoke_names_the_key_it_revoked(fake_stack):
    stack = fake_stack()
    ctx = stack.ctx()
    made = stack.provider.keys_create(ctx, "ci runner")
    listed = next(k for k in stack.provider.keys_list(ctx) if k["id"] == made["id"])
    revoked = stack.provider.keys_revoke(ctx, made["id"])
    assert revoked == {**listed, "revoked": True}
    assert revoked["name"] == "ci runner" and revoked["prefix"] == made["prefix"]
    assert made["id"] not in {k["id"] for k in stack.provider.keys_list(ctx)}
