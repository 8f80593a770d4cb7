"""`alerts.emails` in the spec: who hears a stack's alerts, validated before anything runs,
written by `init`, given by the stack file or LLMCLOUD_ALERTS__EMAILS, and refused by the
local provider, which has no alerts."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmcloud.providers.registry import provider_defaults
from llmcloud.stacks.config import read_stack_config, resolve_spec
from llmcloud.stacks.errors import ConfigError, ExitCode
from llmcloud.stacks.template import render_stack_file


def _spec(provider: str = "aws", environ: dict[str, str] | None = None, **sections):
    return resolve_spec(file_values={"provider": provider, **sections}, environ=environ or {},
                        defaults_for=provider_defaults)


def test_no_addresses_by_default() -> None:
    assert _spec().alerts.emails == []


def test_addresses_are_kept_once_per_mailbox() -> None:
    spec = _spec(alerts={"emails": [" oncall@example.com", "OnCall@Example.com",
                                    "sre@example.org"]})
    assert spec.alerts.emails == ["oncall@example.com", "sre@example.org"]


def test_the_environment_gives_them_comma_separated() -> None:
    spec = _spec(environ={"LLMCLOUD_ALERTS__EMAILS": "a@example.com, b@example.com"})
    assert spec.alerts.emails == ["a@example.com", "b@example.com"]


@pytest.mark.parametrize("bad", ["oncall", "oncall@example", "a@example.com;b@example.com",
                                 "on call@example.com", "@example.com", "a@@example.com"])
def test_what_is_not_an_address_is_refused(bad: str) -> None:
    with pytest.raises(ConfigError) as refused:
        _spec(alerts={"emails": [bad]})
    assert refused.value.exit_code == ExitCode.USAGE
    assert "llmcloud:alerts" in refused.value.message
    assert f"'{bad.strip()}' is not an e-mail address" in refused.value.context


def test_the_local_provider_refuses_them() -> None:
    with pytest.raises(ConfigError) as refused:
        _spec("local", alerts={"emails": ["oncall@example.com"]})
    assert refused.value.exit_code == ExitCode.USAGE
    assert "local provider has no alerts" in refused.value.context
    assert _spec("local").alerts.emails == []


@pytest.mark.parametrize("emails", [[], ["oncall@example.com", "sre@example.org"]])
def test_init_writes_them_and_reads_them_back(tmp_path: Path, emails: list[str]) -> None:
    spec = _spec("gcp", alerts={"emails": emails})
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text(render_stack_file(spec, "dev"))
    text = path.read_text()
    assert "  llmcloud:alerts:\n" in text
    assert f"    emails: {'[]' if not emails else ''}" in text
    again = resolve_spec(file_values=read_stack_config(path), environ={},
                         defaults_for=provider_defaults)
    assert again.alerts.emails == emails


def test_an_environment_value_that_is_json_but_no_list_is_refused_as_an_address() -> None:
    with pytest.raises(ConfigError) as refused:
        _spec(environ={"LLMCLOUD_ALERTS__EMAILS": "123"})
    assert "'123' is not an e-mail address" in refused.value.context
