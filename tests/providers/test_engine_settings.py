"""The spec's KV-cache, context, prefill, prefix-cache, scheduling, reasoning and
sampling-default settings (`server.max_batch_tokens`, `reserve_new_tokens`,
`max_prefill_tokens`, `max_model_len`, `prefix_cache_share`, `scheduling_policy`,
`reasoning_parser`, `generation_config`, `override_generation_config`, `lora_modules`,
`max_loras`, `data_parallel_size`, `trust_remote_code`, `log_format`) reach the model
server on every cloud, as declared under the mocks."""

from __future__ import annotations

import pytest

from tests.providers.declared import boot_script, declared_for, one

SERVER = {"max_batch_tokens": 40000, "reserve_new_tokens": "all", "max_model_len": 8192,
          "max_prefill_tokens": 4096,
          "prefix_cache_share": 0.5, "scheduling_policy": "priority",
          "reasoning_parser": "none", "generation_config": "none",
          "override_generation_config": {"temperature": 0.5, "max_new_tokens": 512},
          "lora_modules": {"sql": "adapters/sql", "chat": "adapters/chat"}, "max_loras": 1,
          "trust_remote_code": True, "log_format": "json", "data_parallel_size": 1}
OVERRIDE = '{"max_new_tokens": 512, "temperature": 0.5}'
LORA = "chat=./adapters/chat sql=./adapters/sql"  # "./": inside the version, never a hub id
# shell-quoted in the boot scripts: the JSON and the adapters reach the server as one
# argument each
FLAGS = ("--max-batch-tokens 40000 --reserve-new-tokens all --max-model-len 8192 "
         "--max-prefill-tokens 4096 "
         "--prefix-cache-share 0.5 --scheduling-policy priority --reasoning-parser none "
         "--generation-config none "
         f"--log-format json --max-loras 1 --data-parallel-size 1 "
         f"--override-generation-config '{OVERRIDE}' "
         "--lora-modules "
         f"'{LORA}' --trust-remote-code")


@pytest.mark.parametrize("provider", ["aws", "gcp", "azure"])
def test_the_servers_on_each_cloud_get_the_specs_engine_settings(provider):
    resources, _ = declared_for(provider, server=SERVER)
    assert FLAGS in boot_script(provider, resources)
    default, _ = declared_for(provider)
    assert "--reserve-new-tokens" not in boot_script(provider, default)  # its own default


def test_the_sagemaker_container_gets_them_as_variables():
    resources, _ = declared_for("aws", compute={"kind": "sagemaker"},
                                model={"name": "t5", "version": "v1"}, server=SERVER)
    env = one(resources, "aws:sagemaker/model:Model").inputs["primaryContainer"]["environment"]
    assert (env["LLMCLOUD_MAX_MODEL_LEN"], env["LLMCLOUD_TRUST_REMOTE_CODE"],
            env["LLMCLOUD_LOG_FORMAT"], env["LLMCLOUD_SCHEDULING_POLICY"],
            env["LLMCLOUD_LORA_MODULES"], env["LLMCLOUD_MAX_LORAS"],
            env["LLMCLOUD_DATA_PARALLEL_SIZE"]) == (
        "8192", "1", "json", "priority", LORA, "1", "1")
    assert (env["LLMCLOUD_MAX_BATCH_TOKENS"], env["LLMCLOUD_RESERVE_NEW_TOKENS"],
            env["LLMCLOUD_MAX_PREFILL_TOKENS"], env["LLMCLOUD_PREFIX_CACHE_SHARE"],
            env["LLMCLOUD_REASONING_PARSER"], env["LLMCLOUD_GENERATION_CONFIG"],
            env["LLMCLOUD_OVERRIDE_GENERATION_CONFIG"]) == ("40000", "all", "4096", "0.5",
                                                           "none", "none", OVERRIDE)
