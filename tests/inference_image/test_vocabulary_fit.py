"""A tokenizer that can produce ids the model has no embedding for (tokens added without
resizing the model) is refused at start; and, should one get past that, the self-check's
chat through the template fails it before the server is ready."""

from __future__ import annotations

import shutil

import pytest
import torch
from devices import TEST_DEVICE, TEST_DTYPE
from server_process import ServerProcess
from tiny_models import build_causal, build_tokenizer

from llmcloud.inference_image import loader
from llmcloud.inference_image.engine import ModelInfo
from llmcloud.inference_image.loader import ModelLoadError, load_model
from llmcloud.inference_image.self_check import SelfCheckFailed
from llmcloud.inference_image.torch_engine import EngineLimits, TorchEngine
from llmcloud.inference_image.vocabulary_fit import vocabulary_misfit

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
ADDED = ["<|im_start|>", "<|im_end|>"]


def _with_added_tokens(source, folder):
    """``source``'s model folder, its tokenizer given the chat tokens and a template that
    writes them, the model not resized: the usual fine-tuning mistake."""
    from transformers import AutoTokenizer

    # (without its manifest, whose hashes are the old tokenizer's)
    shutil.copytree(source, folder, ignore=shutil.ignore_patterns("manifest.json"))
    tokenizer = AutoTokenizer.from_pretrained(source)
    tokenizer.add_special_tokens({"additional_special_tokens": ADDED})
    tokenizer.chat_template = CHATML
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def unresized_causal(causal_dir, tmp_path_factory):
    return _with_added_tokens(causal_dir, tmp_path_factory.mktemp("unresized") / "llama")


def _load(folder):
    return load_model(folder, task=None, device=TEST_DEVICE, dtype=TEST_DTYPE)


def test_a_tokenizer_beyond_the_embeddings_is_refused_at_load(unresized_causal, seq2seq_dir,
                                                              tmp_path):
    with pytest.raises(ModelLoadError) as caught:
        _load(unresized_causal)
    rows = len(build_tokenizer(None))
    assert str(caught.value) == (
        f"cannot serve {unresized_causal}: its tokenizer has {rows + 2} tokens but the "
        f"model's input embeddings have {rows} rows, so 2 tokens have no embedding "
        f"('<|im_start|>' (id {rows}), '<|im_end|>' (id {rows + 1})); a prompt holding one "
        "would fail every request. Tokens were added to the tokenizer without resizing the "
        "model: call model.resize_token_embeddings(len(tokenizer)) before save_pretrained "
        "(and train the new rows), or serve the tokenizer the model was trained with")
    t5 = _with_added_tokens(seq2seq_dir, tmp_path / "t5")
    with pytest.raises(ModelLoadError, match=r"its tokenizer has \d+ tokens but the model's "
                                             r"input embeddings have \d+ rows, so 2 tokens"):
        _load(t5)
    # more rows than tokens (a vocabulary padded to a round size) is fine
    padded = build_causal(tmp_path / "padded", vocab_size=rows + 64)
    assert _load(padded).model.get_input_embeddings().num_embeddings == rows + 64


class _Part(torch.nn.Module):
    def __init__(self, rows):
        super().__init__()
        self.embed_tokens = torch.nn.Embedding(rows, 4)

    def get_input_embeddings(self):
        return self.embed_tokens


class _TwoTables(torch.nn.Module):
    """An encoder-decoder whose decoder has an embedding table of its own, smaller."""

    config = type("Config", (), {"is_encoder_decoder": True})()

    def __init__(self, encoder_rows, decoder_rows):
        super().__init__()
        self.encoder, self.decoder = _Part(encoder_rows), _Part(decoder_rows)

    def get_input_embeddings(self):
        return self.encoder.embed_tokens

    def get_encoder(self):
        return self.encoder

    def get_decoder(self):
        return self.decoder


def test_a_decoder_table_of_its_own_is_checked_too(tokenizer):
    rows = len(tokenizer)
    assert vocabulary_misfit("m", _TwoTables(rows, rows + 8), tokenizer) is None
    reason = vocabulary_misfit("m", _TwoTables(rows + 8, rows - 1), tokenizer)
    assert reason is not None and (f"the model's decoder embeddings have {rows - 1} rows, "
                                   "so 1 token has no embedding") in reason


def test_the_server_exits_1_naming_the_sizes(unresized_causal):
    server = ServerProcess("--model", str(unresized_causal))
    try:
        assert server.wait_exit(timeout=90) == 1
    finally:
        server.stop()
    assert "its tokenizer has" in server.output()
    assert "model.resize_token_embeddings(len(tokenizer))" in server.output()


# On CUDA the out-of-range index is a device-side assert, which would fail every later
# test in this process: the CPU shows the same check.
@pytest.mark.skipif(TEST_DEVICE != "cpu", reason="a device-side assert poisons the process")
def test_past_the_load_the_self_check_chat_catches_it(unresized_causal, monkeypatch):
    monkeypatch.setattr(loader, "vocabulary_misfit", lambda *args: None)
    loaded = _load(unresized_causal)
    info = ModelInfo("tiny", "v1", loaded.task, loaded.max_context)

    def engine():
        return TorchEngine(loaded.model, loaded.tokenizer, info, loaded.device,
                           EngineLimits(max_batch_tokens=4096))

    with pytest.raises(SelfCheckFailed, match=r"failed a test generation \(a test chat "
                                              r"rendered by the chat template of \d+ tokens.*"
                                              r"index out of range"):
        engine()
    loaded.tokenizer.chat_template = None  # a plain prompt alone never shows it
    engine().shutdown()
