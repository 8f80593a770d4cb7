"""The spec's `model.task` reaches every server: SageMaker's containers took it
(`LLMCLOUD_TASK`), but the instance clouds' boot scripts and the local provider's replicas
never passed `--task`, so a model whose config does not say it is a seq2seq model ran as a
causal one whatever the spec said."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.providers.declared import boot_script, declared_for

TASK = "text2text-generation"


@pytest.mark.parametrize("provider", ["aws", "gcp", "azure"])
def test_the_specs_task_reaches_the_cloud_servers(provider):
    resources, _ = declared_for(provider, model={"name": "t5", "task": TASK})
    assert f"--task {TASK}" in boot_script(provider, resources)
    default, _ = declared_for(provider, model={"name": "t5"})
    assert "--task" not in boot_script(provider, default)  # the model's config says


def test_the_specs_task_reaches_the_local_replicas(tmp_path: Path):
    from llmcloud.providers.local.controller import replica_settings

    config = {"command": ["llmcloud-server"], "gateway": {"max_body_kb": 1024},
              "server": {"drain_timeout_seconds": 5, "max_batch_size": 4, "dtype": "auto",
                         "task": TASK}}
    args = replica_settings(config, tmp_path).extra_args
    assert args[args.index("--task") + 1] == TASK
    config["server"]["task"] = None
    assert "--task" not in replica_settings(config, tmp_path).extra_args
