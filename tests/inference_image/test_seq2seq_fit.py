"""`plan`'s model-fit rule (providers/model_fit.py) and the engine agree on a model's KV
cache: the bytes per position the rule reads from config.json are what the engine measures
on the loaded model, and the positions one request takes are what its batches count. The
rule read T5's config.json (num_heads, d_kv, num_decoder_layers) as having no KV cache at
all, and counted a request as its tokens alone where the engine counts spare room (and an
encoder-decoder's prompt and output side by side)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tiny_models import build_causal, build_tokenizer

from llmcloud.inference_image import kv_budget
from llmcloud.inference_image.batch_causal import CausalBatch
from llmcloud.inference_image.batch_seq2seq import Seq2SeqBatch
from llmcloud.inference_image.loader import declared_context, load_model
from llmcloud.providers import model_fit
from llmcloud.stacks.config import resolve_spec

CPU = torch.device("cpu")


def _t5(folder: Path) -> Path:
    """A tiny T5 whose head size is not d_model / num_heads, with more encoder layers than
    decoder ones (as t5-3b's head size and many distilled T5s' layer counts are)."""
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    tokenizer = build_tokenizer(None)
    config = T5Config(vocab_size=len(tokenizer), d_model=48, d_kv=20, d_ff=96, num_layers=3,
                      num_decoder_layers=2, num_heads=3, pad_token_id=0, eos_token_id=1,
                      decoder_start_token_id=0)
    T5ForConditionalGeneration(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _measured_slot_bytes(folder: Path) -> int:
    """Bytes per cache position, as the engine measures them when it sizes its cache."""
    loaded = load_model(folder, task=None, device="cpu", dtype="float32")
    pad = loaded.tokenizer.pad_token_id
    kind = Seq2SeqBatch if loaded.task == "text2text-generation" else CausalBatch
    batch = kind(loaded.model, CPU, pad)
    with torch.inference_mode():
        batch.prefill([[pad] * 8])
    return batch.slot_bytes()


@pytest.mark.parametrize("build", [_t5, build_causal], ids=["t5", "llama"])
def test_the_fit_rule_counts_the_kv_bytes_the_engine_measures(tmp_path, build):
    folder = build(tmp_path / "model")
    size = model_fit.measure_folder(folder)
    assert model_fit.kv_bytes_per_token(size.config, 4) == _measured_slot_bytes(folder)


@pytest.mark.parametrize("context", [1, 8, 100, 255, 256, 512, 4096, 32768])
def test_a_request_takes_the_positions_the_batches_count(context):
    assert kv_budget.row_positions(context, False) == CausalBatch.row_slots(context)
    assert kv_budget.row_positions(context, True) == Seq2SeqBatch.row_slots(context)


def test_t5_on_a_gpu_is_judged_on_its_kv_cache_too():
    # t5-base's config.json: 12 + 12 layers, 12 heads of 64, d_model 768, n_positions 512
    config = {"is_encoder_decoder": True, "model_type": "t5", "d_model": 768, "d_kv": 64,
              "num_heads": 12, "num_layers": 12, "num_decoder_layers": 12,
              "n_positions": 512, "torch_dtype": "float32"}
    spec = resolve_spec(file_values={"provider": "aws", "model": {"name": "t5"},
                                     "compute": {"instance_type": "g6.xlarge"}}, environ={})
    size = model_fit.measure_manifest(
        {"files": [{"path": "model.safetensors", "size": 892_000_000}]}, config)
    fit = model_fit.fit_for(spec, size)
    per_token = 2 * 12 * 12 * 64 * 2 + 768 * 2  # decoder K/V (cross) + encoder state, bf16
    assert model_fit.kv_bytes_per_token(config, 2) == per_token
    assert fit.verdict == "fits" and "tokens of KV cache" in fit.reason
    # the least that starts holds one request of 256 tokens as the engine counts it
    assert fit.needed_gb == pytest.approx(
        0.446 + model_fit.RUNTIME_GB
        + Seq2SeqBatch.row_slots(256) * per_token / 10**9 / kv_budget.CUDA_FRACTION)


def test_the_fit_rule_and_the_server_read_the_same_position_limit(tmp_path):
    # MPT names its context max_seq_len: the rule read it, the server did not (and served
    # the tokenizer's limit instead)
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length",
                "max_seq_len", "seq_length"):
        (tmp_path / "config.json").write_text(json.dumps({key: 1234}))
        assert declared_context(tmp_path) == 1234 == model_fit.context_wanted({key: 1234},
                                                                               None), key


def test_the_least_that_starts_counts_a_causal_rows_spare_room_too():
    config = {"num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
              "hidden_size": 4096, "max_position_embeddings": 8192, "torch_dtype": "bfloat16"}
    spec = resolve_spec(file_values={"provider": "aws", "model": {"name": "m"},
                                     "compute": {"instance_type": "g6.xlarge"}}, environ={})
    size = model_fit.measure_manifest(
        {"files": [{"path": "model.safetensors", "size": 16 * 10**9}]}, config)
    per_token = model_fit.kv_bytes_per_token(config, 2)
    assert model_fit.fit_for(spec, size).needed_gb == pytest.approx(
        16 + model_fit.RUNTIME_GB
        + CausalBatch.row_slots(256) * per_token / 10**9 / kv_budget.CUDA_FRACTION)
