"""A model that loads but cannot generate never reports ready: the server runs a test prompt
through each engine copy first, and refuses a checkpoint that lacks some of its weights."""

from __future__ import annotations

import shutil
import time

import httpx
import pytest
import torch
from devices import TEST_DEVICE, TEST_DTYPE
from safetensors.torch import load_file, save_file
from server_process import ServerProcess
from tiny_models import build_causal

from llmcloud.inference_image.engine import ModelInfo
from llmcloud.inference_image.loader import ModelLoadError, load_model
from llmcloud.inference_image.self_check import (
    SelfCheckFailed,
    check_generation,
    has_finite_logits,
    prompt_ids,
)
from llmcloud.inference_image.torch_engine import EngineLimits, TorchEngine


def _poisoned(source, folder, auto, layer_norm: str):
    """``source``'s model saved to ``folder`` with the weight of ``layer_norm`` all NaN."""
    model = auto.from_pretrained(source)
    with torch.no_grad():
        model.get_parameter(layer_norm).fill_(float("nan"))
    model.save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(source / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def nan_causal_dir(causal_dir, tmp_path_factory):
    from transformers import AutoModelForCausalLM

    return _poisoned(causal_dir, tmp_path_factory.mktemp("nan-llama"), AutoModelForCausalLM,
                     "model.norm.weight")


@pytest.fixture(scope="module")
def nan_seq2seq_dir(seq2seq_dir, tmp_path_factory):
    from transformers import AutoModelForSeq2SeqLM

    return _poisoned(seq2seq_dir, tmp_path_factory.mktemp("nan-t5"), AutoModelForSeq2SeqLM,
                     "decoder.final_layer_norm.weight")


def _watch_until_exit(server: ServerProcess, timeout: float = 90) -> list[int]:
    """The readiness statuses the server answered until it exited."""
    answers, deadline = [], time.monotonic() + timeout
    while server.proc.poll() is None and time.monotonic() < deadline:
        try:
            answers.append(httpx.get(f"{server.url}/health/ready", timeout=1).status_code)
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    return answers


def test_a_model_with_nan_logits_exits_without_ever_being_ready(nan_causal_dir):
    server = ServerProcess("--model", str(nan_causal_dir))
    try:
        answers = _watch_until_exit(server)
        assert server.wait_exit(timeout=5) == 1  # as any other failure to load
    finally:
        server.stop()
    assert 200 not in answers
    output = server.output()
    assert (f"error: the model's logits are not finite (NaN/inf) for a test prompt in "
            f"{TEST_DTYPE} on {TEST_DEVICE}") in output


# Two copies of the model on the CPU (as on two GPUs), the second one poisoned as it loads.
SECOND_COPY_POISONED = """
import sys
import torch
from llmcloud.inference_image import loader
load, copies = loader.load_model, []
def poisoned(*args, **kwargs):
    loaded = load(*args, **kwargs)
    copies.append(loaded)
    if len(copies) == 2:
        with torch.no_grad():
            loaded.model.get_parameter("model.norm.weight").fill_(float("nan"))
    return loaded
loader.load_model = poisoned
from llmcloud.inference_image.server import run
run(sys.argv[1:])
"""


def test_every_data_parallel_copy_is_checked(causal_dir):
    server = ServerProcess("--model", str(causal_dir), "--device", "cpu",
                           "--data-parallel-size", "2", code=SECOND_COPY_POISONED)
    try:
        answers = _watch_until_exit(server)
        assert server.wait_exit(timeout=5) == 1
    finally:
        server.stop()
    assert 200 not in answers
    assert "logits are not finite (NaN/inf) for a test prompt in float32 on cpu" in (
        server.output())


def _engine(loaded) -> TorchEngine:
    info = ModelInfo(name="m", version="v", task=loaded.task, max_context=loaded.max_context)
    return TorchEngine(loaded.model, loaded.tokenizer, info, loaded.device,
                       EngineLimits(max_batch_size=4, max_batch_tokens=4096))


def test_an_encoder_decoder_with_nan_logits_fails_its_check(nan_seq2seq_dir):
    loaded = load_model(nan_seq2seq_dir, task=None, device=TEST_DEVICE, dtype=TEST_DTYPE)
    with pytest.raises(SelfCheckFailed, match=r"logits are not finite \(NaN/inf\)"):
        _engine(loaded)


def test_sound_models_pass_and_their_engines_start_empty(causal, seq2seq):
    for loaded in (causal, seq2seq):
        engine = _engine(loaded)
        try:
            assert engine.ready and engine.num_running == 0 and engine._batch.size == 0
        finally:
            engine.shutdown()


class _Batch:
    """A batch whose logits are ``logits`` at the prefill, then after each decode step
    the next of ``steps``."""

    def __init__(self, logits, *steps):
        self.logits, self.steps, self.kept = logits, list(steps), None

    def prefill(self, prompts):
        return self.logits

    def decode(self, tokens):
        step = self.steps.pop(0)
        if isinstance(step, Exception):
            raise step
        return step

    def keep(self, rows):
        self.kept = rows


def test_half_precision_overflow_hints_at_another_dtype():
    fine, overflowed = torch.zeros(1, 8), torch.full((1, 8), float("inf"))
    with pytest.raises(SelfCheckFailed) as caught:
        check_generation(_Batch(fine, overflowed), [5, 6], "cuda:0", torch.float16)
    assert str(caught.value) == (
        "the model's logits are not finite (NaN/inf) for a test prompt at decode step 1 in "
        "float16 on cuda:0; try --dtype bfloat16 or float32: the model's activations may "
        "overflow float16's range")
    with pytest.raises(SelfCheckFailed, match="in bfloat16 on cuda:1; try --dtype float32$"):
        check_generation(_Batch(fine, fine, overflowed), [5], "cuda:1", torch.bfloat16)


def test_a_failing_forward_is_named_with_its_exception():
    batch = _Batch(torch.zeros(1, 8), RuntimeError("CUDA error: no kernel image"))
    with pytest.raises(SelfCheckFailed, match=r"on cuda:0: RuntimeError: CUDA error: no kernel "
                                              r"image$"):
        check_generation(batch, [5], "cuda:0", torch.bfloat16)


def test_a_finished_check_leaves_the_batch_empty():
    batch = _Batch(torch.zeros(1, 8), torch.zeros(1, 8), torch.zeros(1, 8))
    assert check_generation(batch, [5], "cpu", torch.float32) >= 0
    assert batch.kept == []


def test_logits_that_can_be_sampled_from():
    assert has_finite_logits(torch.tensor([[0.5, -2.0, float("-inf")]]))  # a token ruled out
    assert not has_finite_logits(torch.tensor([[0.5, float("nan"), 1.0]]))
    assert not has_finite_logits(torch.tensor([[0.5, float("inf"), 1.0]]))
    assert not has_finite_logits(torch.tensor([[float("-inf")] * 3]))


def test_the_prompt_leaves_room_for_the_decode_steps(tokenizer):
    assert 2 < len(prompt_ids(tokenizer, 0, 1024)) <= 32
    assert len(prompt_ids(tokenizer, 0, 5)) == 2
    assert prompt_ids(type("Empty", (), {"__call__": lambda self, text: {"input_ids": []}})(),
                      7, 1024) == [7]


def _without(source, folder, dropped):
    """``source``'s model folder copied to ``folder`` without the weights named in it that
    ``dropped`` picks."""
    folder.mkdir()
    for path in source.iterdir():
        if path.name != "model.safetensors":
            shutil.copy(path, folder / path.name)
    weights = load_file(source / "model.safetensors")
    save_file({k: v for k, v in weights.items() if not dropped(k)}, folder / "model.safetensors",
              metadata={"format": "pt"})
    return folder


def test_a_checkpoint_without_some_weights_is_refused(causal_dir, tmp_path):
    folder = _without(causal_dir, tmp_path / "partial", lambda k: ".1.mlp.down_proj" in k)
    with pytest.raises(ModelLoadError, match=r"no weights for 1 of LlamaForCausalLM's "
                                             r"parameters \(model.layers.1.mlp.down_proj.weight\)"):
        load_model(folder, task=None, device="cpu", dtype="float32")


def test_tied_and_untied_models_are_not_refused(causal_dir, seq2seq_dir, tmp_path):
    tied = build_causal(tmp_path / "tied", tie_word_embeddings=True)
    assert "lm_head.weight" not in load_file(tied / "model.safetensors")
    for folder in (tied, causal_dir, seq2seq_dir):
        assert load_model(folder, task=None, device="cpu", dtype="float32").model is not None


def test_a_persistent_buffer_the_checkpoint_lacks_is_not_refused(causal_dir, monkeypatch):
    # remote code (and older transformers) register rotary inv_freq as a persistent buffer:
    # transformers names it missing, though the model's code computes it, not at random
    from transformers.models.llama import modeling_llama

    init = modeling_llama.LlamaRotaryEmbedding.__init__

    def persistent(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.register_buffer("inv_freq", self._buffers.pop("inv_freq"), persistent=True)

    monkeypatch.setattr(modeling_llama.LlamaRotaryEmbedding, "__init__", persistent)
    loaded = load_model(causal_dir, task=None, device="cpu", dtype="float32")
    assert "model.rotary_emb.inv_freq" in loaded.model.state_dict()
