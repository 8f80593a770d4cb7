"""Spec fields a stack on this machine cannot honour, which the local provider ignored
without a word: a custom domain, spot capacity, an image. `up` and `update` refuse them
(exit 4) before anything starts."""

from __future__ import annotations

import pytest

from llmcloud.providers.base import StackContext
from llmcloud.providers.local.provider import LocalProvider
from llmcloud.providers.local.state import stack_dir
from llmcloud.stacks.config import resolve_spec
from llmcloud.stacks.errors import ExitCode, NotSupportedError

IMAGE = "registry.example/llmcloud-server@sha256:" + "a" * 64
REFUSED = [
    ({"gateway": {"domain": "llm.example.com"}}, "gateway.domain"),
    ({"compute": {"spot": True}}, "compute.spot"),
    ({"image": IMAGE}, "image"),
]


def _ctx(home, **sections) -> StackContext:
    spec = resolve_spec(file_values={"provider": "local", **sections}, environ={},
                        defaults_for=lambda _: LocalProvider().defaults())
    return StackContext(project_dir=home, stack="dev", spec=spec,
                        environ={"LLMCLOUD_HOME": str(home)}, yes=True)


@pytest.mark.parametrize(("sections", "key"), REFUSED)
def test_up_refuses_a_setting_it_cannot_honour_before_anything_starts(home, sections, key):
    with pytest.raises(NotSupportedError) as refused:
        LocalProvider().up(_ctx(home, **sections))
    assert refused.value.exit_code == ExitCode.NOT_SUPPORTED
    assert refused.value.message == f"{key} is not offered by the local provider"
    assert refused.value.hint
    # no controller, no key, no state: it stopped before `up` made any of them
    assert not stack_dir({"LLMCLOUD_HOME": str(home)}, "dev").exists()


@pytest.mark.parametrize(("sections", "key"), REFUSED)
def test_update_refuses_it_too(home, sections, key):
    with pytest.raises(NotSupportedError, match=key):
        LocalProvider().update(_ctx(home, **sections))


def test_the_defaults_pass(home):
    LocalProvider().check_spec(_ctx(home).spec)
