"""What every provider must do; each provider's test module subclasses this in one line.

    class TestAwsConformance(ProviderConformance):
        provider_name = "aws"
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest

from llmcloud.providers.base import OPERATIONS, Provider, StackContext
from llmcloud.providers.registry import get_provider, provider_defaults
from llmcloud.stacks.config import resolve_spec
from llmcloud.stacks.errors import CredentialsError, ExitCode, NotSupportedError
from llmcloud.stacks.spec import DeploymentSpec

#: the operation -> the provider method (and its extra arguments) that runs it
CALLS = {
    "up": ("up", ()), "preview": ("preview", ()), "update": ("update", ()),
    "destroy": ("destroy", ()), "refresh": ("refresh", ()), "status": ("status", ()),
    "outputs": ("outputs", ()), "promote": ("promote", ("v2",)), "rollback": ("rollback", ()),
    "keys": ("keys_list", ()),
}
PLAN_KEYS = {"provider", "stack", "resources", "checks", "cost", "budget", "outputs"}


class ProviderConformance:
    """The shared suite. Subclasses set `provider_name`."""

    provider_name: str

    @pytest.fixture
    def provider(self) -> Provider:
        return get_provider(self.provider_name)

    @pytest.fixture
    def spec(self) -> DeploymentSpec:
        return resolve_spec(file_values={"provider": self.provider_name}, environ={},
                            defaults_for=provider_defaults)

    def test_registry_returns_the_provider(self, provider):
        assert provider.name == self.provider_name
        assert isinstance(provider, Provider)

    def test_defaults_and_an_empty_stack_file_make_a_valid_spec(self, provider, spec):
        assert spec.provider == self.provider_name
        assert spec.region == provider.defaults().get("region")
        DeploymentSpec.model_validate(spec.model_dump())

    def test_credentials_check_names_the_fixing_command(self, provider, tmp_path, monkeypatch):
        empty = {"HOME": str(tmp_path), "AWS_CONFIG_FILE": str(tmp_path / "none"),
                 "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}
        for name in ("AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
            monkeypatch.setenv(name, empty[name])
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE",
                     "AWS_SESSION_TOKEN", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                     "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_WEB_IDENTITY_TOKEN_FILE"):
            monkeypatch.delenv(name, raising=False)
        # botocore's last resort is the instance metadata service: no network in tests
        monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        monkeypatch.setenv("HOME", str(tmp_path))
        command = getattr(provider, "credentials_command", None)
        if command is None:
            provider.check_credentials(empty)  # nothing to check (local)
            return
        with pytest.raises(CredentialsError) as info:
            provider.check_credentials(empty)
        assert info.value.exit_code == ExitCode.MISSING_TOOL
        assert info.value.hint and command.split()[0] in info.value.hint

    @pytest.mark.parametrize("operation", sorted(CALLS))
    def test_every_operation_works_or_says_why_not(self, provider, spec, operation, tmp_path):
        reason = provider.unsupported.get(operation)
        method, extra = CALLS[operation]
        if reason is None:
            # offered: implemented, not the base class's refusal (running it needs a stack)
            assert getattr(type(provider), method) is not getattr(Provider, method), (
                f"{operation} is offered but not implemented")
            return
        assert reason.strip(), f"{operation} is declared unsupported without a reason"
        # should a refusal ever come too late, nothing real is touched: a private home, offline
        ctx = StackContext(project_dir=tmp_path, stack="conformance", spec=spec,
                           environ={"LLMCLOUD_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"})
        with pytest.raises(NotSupportedError) as info:
            getattr(provider, method)(ctx, *extra)
        assert info.value.exit_code == ExitCode.NOT_SUPPORTED == 4
        assert info.value.context == reason and info.value.hint

    def test_unsupported_names_only_known_operations(self, provider):
        assert set(provider.unsupported) <= set(OPERATIONS)

    def test_plan_matches_the_contract_or_is_declared_unsupported(self, provider, spec):
        from llmcloud.stacks.plan import run_plan

        if "plan" in provider.unsupported:
            with pytest.raises(NotSupportedError):
                run_plan(spec, "conformance")
            return
        doc = run_plan(spec, "conformance")
        assert set(doc) >= PLAN_KEYS
        json.dumps(doc)
        assert doc["provider"] == self.provider_name and doc["resources"]
        for resource in doc["resources"]:
            assert {"type", "name", "layer", "inputs"} <= set(resource)
            assert resource["type"].count(":") == 2
        assert doc["checks"] and all(check["passed"] for check in doc["checks"]), [
            c for c in doc["checks"] if not c["passed"]]
        assert doc["cost"]["currency"] == "USD" and doc["cost"]["hourly_min"] > 0
        assert doc["cost"]["hourly_max"] >= doc["cost"]["hourly_min"]
        assert doc["budget"] == {"max_hourly_usd": None, "exceeded": False}

    def test_provider_module_imports_no_cloud_sdk_at_module_level(self, provider):
        source = Path(inspect.getfile(type(provider))).read_text()
        top_level = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
        assert not [line for line in top_level if "pulumi_" in line or "boto" in line]
