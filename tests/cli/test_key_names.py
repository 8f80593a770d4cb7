"""A key's name goes from `llmcloud keys create --name` into every provider's store (an AWS
tag, an Azure display name, a comment of GCP's keys secret, the local state file) and back
out through `keys list`: the CLI takes the names the console takes, and says so before it
touches a stack."""

from __future__ import annotations

import pytest

REFUSED = ["", "a" * 65, "ci\nrunner", "team#1", "équipe"]


@pytest.mark.parametrize("name", REFUSED)
def test_a_name_no_provider_keeps_as_given_is_refused_first(cli, project, tmp_path,
                                                            monkeypatch, name):
    monkeypatch.setenv("LLMCLOUD_HOME", str(tmp_path / "llmcloud-home"))
    result = cli("keys", "create", "--name", name, "--provider", "local")
    assert result.exit_code == 2, result.output
    assert "is not a key name" in result.stderr
    assert "llmcloud keys create --name ci-runner" in result.stderr
    assert not (tmp_path / "llmcloud-home").exists()  # no stack was opened


def test_the_cli_and_the_console_take_the_same_names():
    import re

    from pydantic import ValidationError

    from llmcloud.console.api import KeyRequest
    from llmcloud.providers.naming import KEY_NAME

    for name in ("ci", "team a.b_c@d-e", "a" * 64):
        assert re.fullmatch(KEY_NAME, name) and KeyRequest(name=name).name == name
    for name in REFUSED:
        assert not re.fullmatch(KEY_NAME, name)
        with pytest.raises(ValidationError):
            KeyRequest(name=name)
