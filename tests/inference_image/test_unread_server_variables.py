"""The model server says at start, in one warning, which `LLMCLOUD_*` variables of its
environment it does not read (a typo, or a setting of a newer llmcloud than its image, which
SageMaker passes as a variable); never one it or another part of llmcloud reads, and every
variable the providers send it is one it reads."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from llmcloud.inference_image.server_options import VARIABLES
from llmcloud.inference_image.unread_variables import SPEC_SECTIONS, unread_variables

ROOT = Path(__file__).resolve().parents[2]
NAME = re.compile(r"LLMCLOUD_[A-Z0-9_]*[A-Z0-9](?![A-Z0-9_]*\*)")  # not LLMCLOUD_AZURE_*


def names_in(folder: str, *patterns: str, skip: tuple[str, ...] = ()) -> set[str]:
    return {name for pattern in patterns for path in (ROOT / folder).rglob(pattern)
            if path.name not in skip for name in NAME.findall(path.read_text())}


def test_a_variable_the_server_does_not_read_is_one_warning_at_start():
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LLMCLOUD_")}
    environ.update(LLMCLOUD_MAX_BATCH_TOKEN="4096", LLMCLOUD_SPECULATIVE_DECODING="1",
                   LLMCLOUD_MAX_BATCH_SIZE="8", LLMCLOUD_HOME="/tmp/home",
                   LLMCLOUD_COMPUTE__MAX_REPLICAS="3", LLMCLOUD_LOCAL_SERVER="x")
    result = subprocess.run(
        [sys.executable, "-m", "llmcloud.inference_image.server", "--model", "unused",
         "--max-queue", "0"], env=environ, capture_output=True, text=True, timeout=120)
    warnings = [line for line in result.stderr.splitlines() if "WARNING" in line]
    assert len(warnings) == 1, result.stderr
    assert ("does not read LLMCLOUD_MAX_BATCH_TOKEN (did you mean LLMCLOUD_MAX_BATCH_TOKENS?)"
            ", LLMCLOUD_SPECULATIVE_DECODING, set in its environment") in warnings[0]
    assert "llmcloud image build" in warnings[0]
    for known in ("LLMCLOUD_MAX_BATCH_SIZE", "LLMCLOUD_HOME", "LLMCLOUD_COMPUTE",
                  "LLMCLOUD_LOCAL_SERVER"):
        assert known not in warnings[0]


def test_the_server_s_list_of_its_variables_is_the_variables_its_code_reads():
    read = names_in("inference_image", "*.py", "Dockerfile", skip=("unread_variables.py",))
    assert read == VARIABLES
    assert unread_variables(dict.fromkeys(VARIABLES, "1")) == {}


def test_every_variable_the_providers_send_the_server_is_one_it_reads():
    from llmcloud.providers.aws.endpoint_config import container_environment
    from llmcloud.providers.aws.refresh_wait import VERSION_VARIABLE
    from llmcloud.stacks.spec import DeploymentSpec

    every = {"max_batch_tokens": 8192, "reserve_new_tokens": "all", "max_model_len": 4096,
             "max_prefill_tokens": 1024, "prefix_cache_share": 0.5,
             "scheduling_policy": "priority", "reasoning_parser": "think",
             "lora_modules": {"sql": "adapters/sql"}, "max_loras": 2,
             "data_parallel_size": 1, "log_format": "json", "trust_remote_code": True,
             "generation_config": "none", "override_generation_config": {"temperature": 0.5}}
    server_spec = DeploymentSpec.model_fields["server"].annotation
    set_apart = {"port", "drain_timeout_seconds", "max_batch_size", "dtype", "pack_weights"}
    assert set(server_spec.model_fields) == set(every) | set_apart, \
        "a new server setting: give it a value in `every` above"
    sent = container_environment(
        model_name="m", version="v1", dtype="auto", max_batch_size=8,
        drain_timeout_seconds=30, gpus=1, max_body_kb=1024, task="text-generation",
        engine_settings=server_spec(**every).engine_settings())
    sagemaker = {name for name in sent if name.startswith("LLMCLOUD_")}
    assert len(sagemaker) == 9 + len(every)  # each setting given is one variable
    # the boot scripts' `docker run -e ...`: the rest goes as flags (LATER_FLAGS)
    boot = {name for path in (ROOT / "providers").rglob("*.py")
            for name in re.findall(r"-e (LLMCLOUD_\w+)=", path.read_text())}
    assert boot == {"LLMCLOUD_PORT"}
    assert sagemaker | boot | {VERSION_VARIABLE} <= VARIABLES
    assert unread_variables(sent) == {}


def test_the_variables_of_llmcloud_s_other_parts_are_never_warned_about():
    """A local replica inherits the operator's environment: the command line's, the local
    provider's, the console's variables, the spec's."""
    from llmcloud.stacks.config import SECTIONS

    assert SPEC_SECTIONS == SECTIONS
    others = {name for folder in ("cli", "stacks", "providers", "console")
              for name in names_in(folder, "*.py")}
    others -= {"LLMCLOUD_AWS_1", "LLMCLOUD_GCP_1", "LLMCLOUD_GCP_2",  # policy check ids
               "LLMCLOUD_BUDGET_MAX_HOURLY_USD"}  # the typo the command line refuses
    assert "LLMCLOUD_STACK" in others and "LLMCLOUD_LOCAL_SERVER" in others
    spec = {f"LLMCLOUD_{section.upper()}" for section in SECTIONS} | {
        "LLMCLOUD_COMPUTE__MAX_REPLICAS", "LLMCLOUD_SERVER__PORT"}
    assert unread_variables(dict.fromkeys(others | spec, "1")) == {}


def test_close_names_are_suggested_and_far_ones_are_not():
    assert unread_variables({"LLMCLOUD_LOGFORMAT": "json", "LLMCLOUD_DRAIN_TIMEOUT": "5",
                             "LLMCLOUD_KV_CACHE_DTYPE": "fp8", "PATH": "/bin"}) == {
        "LLMCLOUD_DRAIN_TIMEOUT": "LLMCLOUD_DRAIN_TIMEOUT_SECONDS",
        "LLMCLOUD_KV_CACHE_DTYPE": None, "LLMCLOUD_LOGFORMAT": "LLMCLOUD_LOG_FORMAT"}
