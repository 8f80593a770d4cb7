"""What an `up` converges a running stack to is written down in `state.json`'s `config`:
`destroy` waits out the drain timeout it names, `promote` reads the model's kind there and
the console shows the rate limits there. Before, the file kept the first `up`'s."""

from __future__ import annotations

import json

import pytest

from llmcloud.stacks.errors import LlmcloudError
from tests.local.conftest import fake_model


def test_a_converged_configuration_is_recorded_in_the_state_file(fake_stack, tmp_path):
    stack = fake_stack(replicas=1)
    stack.up()
    result = stack.up(gateway__rate_limit=50, server__drain_timeout_seconds=2)
    assert sorted(result["changed"]) == ["gateway", "server"]
    config = json.loads(stack.state_file.path.read_text())["config"]
    assert config["gateway"]["rate_limit"] == 50
    assert config["server"]["drain_timeout_seconds"] == 2


def test_a_failed_model_change_records_the_model_still_served(fake_stack, tmp_path):
    stack = fake_stack(replicas=1)
    stack.up()
    broken = fake_model(tmp_path / "broken", exit_on_start="error: no weights")
    with pytest.raises(LlmcloudError, match="v2"):
        stack.up(model__source=str(broken), model__version="v2")
    config = json.loads(stack.state_file.path.read_text())["config"]
    assert config["version"] == "v1" and config["gateway"]["rate_limit"] == 10000
    assert stack.status()["model_version"] == "v1"
