"""Every cloud program exports the model history it deployed beside its version: promote,
rollback and update read them back as the truth when the stack file (a fresh checkout of a
committed one, or a colleague's machine) is behind."""

from __future__ import annotations

import pytest

from llmcloud.stacks.plan import declare
from tests.providers.declared import spec_for
from tests.providers.test_first_up import IMAGE

MODEL = {"name": "m", "version": "v3", "history": ["v1", "v2"]}


@pytest.mark.parametrize("cloud", ["aws", "gcp", "azure"])
@pytest.mark.parametrize("first_up", [True, False], ids=["registry-only", "whole"])
def test_the_outputs_name_the_deployed_version_and_history(cloud, first_up):
    image = {} if first_up else {"image": IMAGE[cloud]}
    _, outputs = declare(spec_for(cloud, model=MODEL, **image), "dev", preview=False)
    assert ("next_step" in outputs) is first_up
    assert outputs["model_version"] == "v3"
    assert outputs["model_history"] == ["v1", "v2"]


def test_the_sagemaker_flavour_names_them_too():
    spec = spec_for("aws", model=MODEL, image=IMAGE["aws"], compute={"kind": "sagemaker"})
    _, outputs = declare(spec, "dev", preview=False)
    assert "sagemaker_endpoint" in outputs
    assert (outputs["model_version"], outputs["model_history"]) == ("v3", ["v1", "v2"])


def test_an_empty_history_is_an_empty_list():
    _, outputs = declare(spec_for("gcp", model={"name": "m", "version": "v1"}), "dev",
                         preview=False)
    assert outputs["model_history"] == []
