"""What a local stack says of its alerts and its controller names the stack without a
doubled quote ("stack 'dev''s alerts"): "the alerts of stack 'dev'"."""

from __future__ import annotations

from types import SimpleNamespace

import httpx
import pytest

from llmcloud.providers.local.bake import check_bake, firing
from llmcloud.providers.update_in_progress import _local_status
from llmcloud.stacks.errors import ConfigError, DeploymentError


def test_a_short_bake_names_the_alerts_of_the_stack() -> None:
    with pytest.raises(ConfigError) as refused:
        check_bake("dev", 60)
    assert "the alerts of stack 'dev' over the requests" in refused.value.context
    assert "''" not in refused.value.context


def test_alerts_that_stopped_being_judged_name_the_stack() -> None:
    stale = {"alerts": {"firing": {}, "judged_seconds_ago": 600}}
    with pytest.raises(DeploymentError) as failed:
        firing(stale, "dev")
    assert failed.value.message == "the alerts of stack 'dev' could not be read"


def test_a_controller_that_does_not_answer_names_the_stack() -> None:
    class Client:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            pass

        def get(self, path):
            raise httpx.ReadTimeout("timed out")

    prov = SimpleNamespace(_client=lambda state: Client(), _state=lambda ctx: None)
    with pytest.raises(DeploymentError) as failed:
        _local_status(prov, SimpleNamespace(stack="dev"))
    assert failed.value.message == \
        "could not ask the controller of stack 'dev' whether a rollout runs"
