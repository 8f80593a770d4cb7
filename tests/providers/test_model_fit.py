"""A model that cannot fit its servers' GPUs is refused before anything runs: the rule
(`providers/model_fit.py`) on tiny synthetic manifests (sizes only, no weights), and where
it applies: `promote`/`rollback` (the version's manifest in the store) and a cloud's `up`."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from llmcloud.providers import model_fit, rollout
from llmcloud.providers.base import StackContext
from llmcloud.stacks.config import resolve_spec
from llmcloud.stacks.errors import ConfigError, ExitCode
from tests.providers.untouched_stack import UntouchedProvider

GB = 10**9
#: a Llama-like 8B model's shape: 32 layers, 8 key-value heads of 128 (128 KiB a token in
#: bf16), a context of 131072 tokens
LLAMA_8B = {"num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
            "hidden_size": 4096, "max_position_embeddings": 131072, "torch_dtype": "bfloat16"}


def _spec(provider="aws", instance_type=None, **server):
    values = {"provider": provider, "model": {"name": "m", "version": "v2"}}
    if instance_type:
        values["compute"] = {"instance_type": instance_type}
    if server:
        values["server"] = server
    return resolve_spec(file_values=values, environ={})


def _manifest(weights: dict[str, int], version="v2") -> dict:
    files = {"config.json": 700, "tokenizer.json": 9_000_000, **weights}
    return {"format": 1, "name": "m", "version": version,
            "files": [{"path": p, "sha256": "0" * 64, "size": s} for p, s in files.items()]}


def _size(weights_bytes: int, config: dict | None = None):
    return model_fit.measure_manifest(_manifest({"model.safetensors": weights_bytes}), config)


def test_a_model_twice_a_gpu_is_refused_with_both_numbers_and_what_would_fit():
    fit = model_fit.fit_for(_spec(instance_type="g6.xlarge"),
                            _size(30 * GB, {"torch_dtype": "bfloat16"}))
    assert fit.verdict == "too_big" and fit.gpu_gb == 24 and fit.needed_gb > 30
    with pytest.raises(ConfigError) as refused:
        model_fit.enforce(fit, "version v2 of m")
    error = refused.value
    assert error.exit_code == ExitCode.USAGE
    assert "needs at least 30.5 GB on a GPU, which has 24 GB" in error.message
    # cheapest first, from the price table: the 48 GB L40S before the A100s and H100s
    assert error.hint.startswith("set compute.instance_type to one whose GPUs hold it "
                                 "(cheapest first): g6e.xlarge, g6e.2xlarge")
    assert "g5.48xlarge" not in error.hint  # eight 24 GB GPUs: no single one holds it


def test_several_gpus_do_not_add_up_each_holds_a_whole_copy():
    # g5.48xlarge has 8 x 24 GB: 192 GB in all, but the server loads a copy on each GPU
    fit = model_fit.fit_for(_spec(instance_type="g5.48xlarge"),
                            _size(30 * GB, {"torch_dtype": "bfloat16"}))
    assert fit.verdict == "too_big"
    with pytest.raises(ConfigError, match="which has 24 GB"):
        model_fit.enforce(fit, "m")


def test_a_float32_checkpoint_served_at_16_bits_needs_half():
    size = _size(40 * GB, {"torch_dtype": "float32"})
    assert model_fit.fit_for(_spec(instance_type="g6e.xlarge"), size).weights_gb == (20, 20)
    assert model_fit.fit_for(_spec(instance_type="g6e.xlarge"), size).verdict == "fits"
    # served as stored, float32, it does not fit a 24 GB GPU, and barely a 48 GB one
    assert model_fit.fit_for(_spec(instance_type="g6.xlarge", dtype="float32"),
                             size).verdict == "too_big"


def test_an_unknown_precision_refuses_only_what_cannot_fit_even_halved():
    size = _size(40 * GB)  # no config.json dtype: 20 to 40 GB at 16 bits
    fit = model_fit.fit_for(_spec(instance_type="g6.xlarge"), size)
    assert fit.verdict == "close" and fit.weights_gb == (20, 40)
    assert model_fit.fit_for(_spec(instance_type="g6.xlarge"), _size(60 * GB)).verdict == \
        "too_big"


def test_a_quantized_checkpoint_counts_as_stored():
    size = _size(5 * GB, {"torch_dtype": "float16", "quantization_config": {"bits": 4}})
    assert model_fit.fit_for(_spec(instance_type="g4dn.xlarge"), size).weights_gb == (5, 5)


def test_a_kv_cache_short_of_the_whole_context_is_a_warning(capsys):
    size = _size(16 * GB, LLAMA_8B)
    fit = model_fit.fit_for(_spec(instance_type="g6.xlarge"), size)
    assert fit.verdict == "close" and "shorter context" in fit.reason
    model_fit.enforce(fit, "version v2 of m")  # a warning, not a refusal
    assert "warning: version v2 of m is close to the GPU memory of g6.xlarge" in \
        capsys.readouterr().err
    # the same model asked for 8k tokens only: room enough
    assert model_fit.fit_for(_spec(instance_type="g6.xlarge", max_model_len=8192),
                             size).verdict == "fits"
    # a cache set larger than the room is a warning too (the engine does not size it)
    assert model_fit.fit_for(_spec(instance_type="g6.xlarge", max_model_len=8192,
                                   max_batch_tokens=200_000), size).verdict == "close"


def test_no_room_for_the_smallest_cache_is_refused():
    # the weights fit, but 256 tokens of cache do not beside them: the server refuses to start
    config = {**LLAMA_8B, "num_key_value_heads": 32}  # 512 KiB a token
    fit = model_fit.fit_for(_spec(instance_type="g6.xlarge"), _size(23_400_000_000, config))
    assert fit.verdict == "too_big"


def test_a_small_model_fits_and_passes_silently(capsys):
    fit = model_fit.fit_for(_spec(instance_type="g6.xlarge"),
                            _size(1 * GB, {"torch_dtype": "bfloat16"}))
    assert fit.verdict == "fits"
    model_fit.enforce(fit, "m")
    assert capsys.readouterr().err == ""


def test_the_loaded_files_only_safetensors_before_a_bin_and_the_adapters():
    files = {"model-00001-of-00002.safetensors": 10, "model-00002-of-00002.safetensors": 5,
             "model.safetensors.index.json": 1, "pytorch_model.bin": 100,
             "training_args.bin": 7, "original/consolidated.pth": 1000,
             "adapters/sql/adapter_model.safetensors": 3}
    assert model_fit.loaded_weight_files(files) == 15
    assert model_fit.loaded_weight_files(files, {"sql": "adapters/sql"}) == 18
    del files["model.safetensors.index.json"]
    assert model_fit.loaded_weight_files(files) == 100


def test_sagemaker_and_the_other_clouds_tables():
    size = _size(30 * GB, {"torch_dtype": "bfloat16"})
    spec = resolve_spec(file_values={"provider": "aws", "compute": {"kind": "sagemaker"},
                                     "model": {"name": "m"}}, environ={})
    fit = model_fit.fit_for(spec, size)
    assert fit.instance_type == "ml.g6.xlarge" and fit.verdict == "too_big"
    assert fit.fitting[0].startswith("ml.")
    gcp = model_fit.fit_for(_spec("gcp", "a2-highgpu-1g"), size)
    assert (gcp.verdict, gcp.gpu_gb) == ("fits", 40)
    azure = model_fit.fit_for(_spec("azure", "Standard_NC4as_T4_v3"), size)
    assert azure.verdict == "too_big" and "Standard_NC24ads_A100_v4" in azure.fitting
    assert model_fit.fit_for(_spec("local"), size) is None
    assert model_fit.fit_for(_spec(instance_type="x9.unknown"), size) is None


def test_a_local_folder_is_measured_and_its_safetensors_header_read(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header
                                               + b"\0" * 8)
    (folder / "config.json").write_text("{}")
    size = model_fit.measure_folder(folder)
    assert size.stored_width == 4 and size.weights_bytes == 16 + len(header)
    with open(folder / "model.safetensors", "r+b") as handle:  # sparse: sizes only
        handle.truncate(60 * GB)
    fit = model_fit.fit_for(_spec(instance_type="g6.xlarge"), model_fit.measure_folder(folder))
    assert fit.verdict == "too_big" and fit.weights_gb[0] == pytest.approx(30)


# -- promote and rollback: the version's manifest in the store --------------------------


def _store(tmp_path: Path, version: str, weights: int, config: dict | None = None) -> str:
    root = tmp_path / "store"
    folder = root / "m" / version
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps(
        _manifest({"model.safetensors": weights}, version)))
    (folder / "config.json").write_text(json.dumps(config or {"torch_dtype": "bfloat16"}))
    return str(root)


def _ctx(tmp_path: Path, spec) -> StackContext:
    return StackContext(project_dir=tmp_path, stack="prod", spec=spec, environ={})


def test_promoting_a_version_too_large_for_the_gpus_is_refused_before_the_update(tmp_path):
    provider = UntouchedProvider(_store(tmp_path, "v2", 30 * GB))
    with pytest.raises(ConfigError) as refused:
        rollout.promote(provider, _ctx(tmp_path, _spec(instance_type="g6.xlarge")), "v2")
    assert refused.value.message.startswith("version v2 of m does not fit the GPUs of "
                                            "g6.xlarge")
    assert "g6e.xlarge" in refused.value.hint


def test_rolling_back_to_a_version_too_large_is_refused_too(tmp_path):
    provider = UntouchedProvider(_store(tmp_path, "v0", 30 * GB))
    spec = resolve_spec(file_values={"provider": "aws", "compute": {
        "instance_type": "g6.xlarge"}, "model": {"name": "m", "version": "v1",
                                                 "history": ["v0"]}}, environ={})
    with pytest.raises(ConfigError, match="version v0 of m does not fit"):
        rollout.rollback(provider, _ctx(tmp_path, spec))


def test_the_stored_config_gives_the_precision(tmp_path):
    # 40 GB of float32 is 20 GB served at 16 bits: fits a 48 GB GPU, as the config says
    store = _store(tmp_path, "v2", 40 * GB, {"torch_dtype": "float32"})
    manifest = json.loads((Path(store) / "m" / "v2" / "manifest.json").read_text())
    model_fit.check_stored_version(_spec(instance_type="g6e.xlarge"), store, "m", "v2",
                                   manifest)
    with pytest.raises(ConfigError):
        model_fit.check_stored_version(_spec(instance_type="g6.xlarge", dtype="float32"),
                                       store, "m", "v2", manifest)


# -- up on a cloud ------------------------------------------------------------------------


def _deployed(monkeypatch, tmp_path: Path, provider_name: str, outputs: dict):
    """`provider_name`'s provider over a fake deployed stack whose outputs are `outputs`."""
    from types import SimpleNamespace

    from llmcloud.providers.registry import get_provider
    from tests.stacks.fakes import FakeStack

    provider = get_provider(provider_name)
    cls = type(provider)
    monkeypatch.setattr(cls, "unsupported", {})
    monkeypatch.setattr(cls, "require_sdk", lambda self: None)
    monkeypatch.setattr(cls, "check_credentials", lambda self, environ: None)
    monkeypatch.setattr(cls, "check_spec", lambda self, spec: None)  # the spec's own checks
    opener = FakeStack.opener(stack_outputs=outputs, last=SimpleNamespace(
        kind="update", result="succeeded", end_time=None, resource_changes={}))
    monkeypatch.setattr(cls, "stack_opener", opener)
    (tmp_path / "Pulumi.yaml").write_text("name: t\nruntime: python\n")
    (tmp_path / "Pulumi.prod.yaml").write_text(
        f"config:\n  llmcloud:provider: {provider_name}\n")
    return provider, opener


@pytest.mark.store_reads
@pytest.mark.parametrize("provider_name,instance_type", [
    ("aws", "g6.xlarge"), ("gcp", "g2-standard-8"), ("azure", "Standard_NC4as_T4_v3")])
def test_up_refuses_the_stored_version_before_the_update(tmp_path, monkeypatch,
                                                         provider_name, instance_type):
    store = _store(tmp_path, "v2", 30 * GB)
    provider, opener = _deployed(monkeypatch, tmp_path, provider_name, {
        "model_store_uri": store, "model_version": "v2"})
    ctx = _ctx(tmp_path, _spec(provider_name, instance_type))
    with pytest.raises(ConfigError, match=f"version v2 of m does not fit the GPUs of "
                                          f"{instance_type}"):
        provider.up(ctx)
    assert not [name for stack in opener.opened for name, _ in stack.calls if name == "up"]


@pytest.mark.store_reads
def test_up_without_a_store_or_the_version_has_nothing_to_check(tmp_path, monkeypatch):
    for outputs in ({}, {"model_store_uri": str(tmp_path / "empty")}):
        provider, opener = _deployed(monkeypatch, tmp_path, "aws", outputs)
        provider.up(_ctx(tmp_path, _spec(instance_type="g6.xlarge")))
        assert [name for name, _ in opener.opened[0].calls if name == "up"]


def test_an_upload_for_the_stack_warns_but_never_refuses(tmp_path, capsys):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text('{"torch_dtype": "bfloat16"}')
    with open(folder / "model.safetensors", "wb") as handle:
        handle.truncate(30 * GB)
    model_fit.warn_for_upload(_spec(instance_type="g6.xlarge"), folder)
    err = capsys.readouterr().err
    assert err.startswith("warning: the model in ") and "does not fit the GPUs of g6.xlarge" \
        in err and "g6e.xlarge" in err


def test_the_plan_document_has_the_local_folders_fit(tmp_path):
    from llmcloud.stacks.plan import run_plan

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text('{"torch_dtype": "bfloat16"}')
    with open(folder / "model.safetensors", "wb") as handle:
        handle.truncate(30 * GB)
    spec = resolve_spec(file_values={"provider": "gcp", "model": {
        "source": str(folder), "name": "m"}}, environ={})
    fit = run_plan(spec, "dev")["model_fit"]
    assert (fit["verdict"], fit["instance_type"], fit["gpu_memory_gb"]) == (
        "too_big", "g2-standard-8", 24)
    assert fit["fitting"][0] == "a2-highgpu-1g"
