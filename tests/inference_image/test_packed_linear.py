"""Linear layers packed for oneDNN compute what the plain ones do, and replace them."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
import torch.nn.functional as F
import transformers as tf

from llmcloud.inference_image import loader, packed_linear, server
from llmcloud.inference_image.loader import load_model
from llmcloud.inference_image.packed_linear import PackedLinear, pack_linear_layers

pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(),
                                reason="torch built without oneDNN")


@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("shape", [(1, 48), (16, 48), (17, 48), (100, 48), (4, 3, 48),
                                   (0, 48), (601, 48), (2, 300, 48), (3, 512, 48)])
def test_a_packed_layer_computes_the_plain_product(shape, with_bias):
    torch.manual_seed(0)
    weight, bias = torch.randn(40, 48), torch.randn(40) if with_bias else None
    x = torch.randn(*shape)
    layer = PackedLinear(weight, bias, batch_size=16)
    with torch.inference_mode():
        assert torch.allclose(layer(x), F.linear(x, weight, bias), atol=1e-5)
        # a transposed (non-contiguous) input, as attention outputs can be
        xt = torch.randn(48, 7).t()
        assert torch.allclose(layer(xt), F.linear(xt, weight, bias), atol=1e-5)
    assert (layer.in_features, layer.out_features) == (48, 40)
    assert layer.weight.shape == (40, 48) and layer.weight.dtype == torch.float32


def test_products_of_any_length_run_at_a_bounded_set_of_row_counts(monkeypatch):
    # oneDNN keeps a primitive (~0.5 MiB) per row count it sees: prompts of every length
    # must not make the server's memory grow with each new one.
    seen: list[int] = []
    real = packed_linear._linear

    def recording(x, weight, bias):
        seen.append(x.numel() // x.shape[-1])
        return real(x, weight, bias)

    monkeypatch.setattr(packed_linear, "_linear", recording)
    torch.manual_seed(0)
    weight, bias = torch.randn(24, 32), torch.randn(24)
    layer = PackedLinear(weight, bias, batch_size=16)
    with torch.inference_mode():
        for rows in range(1, 1300):
            x = torch.randn(rows, 32)
            assert torch.allclose(layer(x), F.linear(x, weight, bias), atol=1e-5), rows
    assert set(range(1, 17)) <= set(seen)  # a decode batch runs exactly
    assert len(set(seen)) <= 46 and max(seen) == packed_linear.ROW_BLOCK
    assert max(packed_linear.run_rows(rows, 16) / rows for rows in range(65, 513)) <= 1.125


def _llama(tied: bool):
    torch.manual_seed(0)
    config = tf.LlamaConfig(vocab_size=300, hidden_size=64, intermediate_size=128,
                            num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                            max_position_embeddings=128, tie_word_embeddings=tied)
    return tf.LlamaForCausalLM(config).eval()


def _logits(model, ids):
    with torch.inference_mode():
        return model(input_ids=ids).logits


def test_packing_replaces_every_plain_linear_and_keeps_the_logits():
    model, plain = _llama(tied=False), _llama(tied=False)
    linears = [n for n, m in model.named_modules() if type(m) is torch.nn.Linear]
    assert pack_linear_layers(model, batch_size=16) == len(linears) == 2 * 7 + 1
    assert not any(type(m) is torch.nn.Linear for m in model.modules())
    ids = torch.randint(2, 300, (3, 9))
    assert torch.allclose(_logits(model, ids), _logits(plain, ids), atol=1e-4)


def test_packing_frees_the_plain_weights():
    model = _llama(tied=False)
    gone = weakref.ref(model.model.layers[0].mlp.down_proj.weight)
    pack_linear_layers(model, batch_size=16)
    gc.collect()
    assert gone() is None


def test_a_weight_shared_with_the_embeddings_stays_plain():
    model, plain = _llama(tied=True), _llama(tied=True)
    packed = pack_linear_layers(model, batch_size=16)
    assert packed == 2 * 7
    assert type(model.lm_head) is torch.nn.Linear
    assert model.lm_head.weight is model.model.embed_tokens.weight
    ids = torch.randint(2, 300, (2, 5))
    assert torch.allclose(_logits(model, ids), _logits(plain, ids), atol=1e-4)


def test_gpt2_conv1d_layers_are_packed_too():
    def gpt2():
        torch.manual_seed(0)
        config = tf.GPT2Config(vocab_size=300, n_embd=64, n_layer=2, n_head=4, n_positions=64)
        return tf.GPT2LMHeadModel(config).eval()

    model, plain = gpt2(), gpt2()
    assert pack_linear_layers(model, batch_size=16) == 2 * 4  # c_attn, c_proj, c_fc, mlp c_proj
    ids = torch.randint(0, 300, (2, 6))
    assert torch.allclose(_logits(model, ids), _logits(plain, ids), atol=1e-4)


def test_other_dtypes_and_torch_without_onednn_keep_plain_weights(monkeypatch):
    model = _llama(tied=False).to(torch.bfloat16)
    assert pack_linear_layers(model, batch_size=16) == 0
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: False)
    assert pack_linear_layers(_llama(tied=False), batch_size=16) == 0


def test_a_onednn_that_cannot_pack_leaves_a_working_plain_model(monkeypatch, caplog):
    def refuse(weight, batch_size):
        raise RuntimeError("unsupported platform")

    monkeypatch.setattr(torch.ops.mkldnn, "_reorder_linear_weight", refuse)
    model, plain = _llama(tied=False), _llama(tied=False)
    assert pack_linear_layers(model, batch_size=16) == 0
    assert "keeping plain linear weights" in caplog.text
    ids = torch.randint(2, 300, (2, 5))
    assert torch.equal(_logits(model, ids), _logits(plain, ids))


def test_the_loader_packs_on_cpu_only_when_asked(causal_dir):
    packed = load_model(causal_dir, task=None, device="cpu", dtype="auto", pack_for_batch=8)
    plain = load_model(causal_dir, task=None, device="cpu", dtype="auto")
    assert any(isinstance(m, PackedLinear) for m in packed.model.modules())
    assert not any(isinstance(m, PackedLinear) for m in plain.model.modules())


@pytest.mark.parametrize(("flags", "pack_for_batch"), [
    ([], 32), (["--max-batch-size", "8"], 8), (["--no-pack-weights"], None)])
def test_the_server_packs_for_its_batch_size_unless_told_not_to(monkeypatch, causal_dir,
                                                                flags, pack_for_batch):
    asked = {}

    def load_model_spy(folder, **kwargs):
        asked.update(kwargs)
        raise RuntimeError("stop here")

    monkeypatch.setattr(loader, "load_model", load_model_spy)
    args = server.build_parser().parse_args(["--model", str(causal_dir), *flags])
    with pytest.raises(RuntimeError, match="stop here"):
        server._load(args, state=None)
    assert asked["pack_for_batch"] == pack_for_batch
