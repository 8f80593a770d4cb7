"""An AWS destroy deletes the keys `llmcloud keys create` made before Pulumi's destroy: when
Pulumi then refuses it (another update holds the stack), the command did change the stack,
so it is no "busy, nothing changed" (exit 75, which a CI job retries blindly) but a failure
that says which keys are gone (exit 1)."""

from __future__ import annotations

import pytest

from llmcloud.providers.aws.provider import AwsProvider
from llmcloud.stacks.errors import BusyError, ExitCode, LlmcloudError
from tests.providers.test_aws_keys import Destroyable, gateway  # noqa: F401 (a fixture)


class Refused(Destroyable):
    def destroy(self) -> dict:
        super().destroy()
        raise BusyError("another update of stack 'prod' is in progress",
                        hint="wait for it, or if it died: pulumi cancel --stack prod --yes")


def test_a_destroy_refused_after_it_deleted_keys_is_no_busy_refusal(gateway,  # noqa: F811
                                                                    monkeypatch):
    provider, ctx, client, plan, own, outputs = gateway
    monkeypatch.setattr(AwsProvider, "_engine",
                        lambda self, ctx, operation: Refused(outputs, client, plan))
    with pytest.raises(BusyError):  # no key beyond the stack's own: nothing changed
        provider.destroy(ctx)

    made = [provider.keys_create(ctx, name)["id"] for name in ("ci", "alice")]
    with pytest.raises(LlmcloudError) as refused:
        provider.destroy(ctx)

    assert refused.value.exit_code == ExitCode.ERROR
    assert refused.value.message == ("destroy of stack 'prod' stopped half-way: another "
                                     "update of stack 'prod' is in progress")
    assert all(key in refused.value.context for key in made)
    assert refused.value.hint.endswith("then llmcloud destroy --stack prod --yes again")
