"""Continuous batching decodes exactly as generate() across causal model families.

The running batch reshapes transformers' caches (left padding, rows joining and leaving,
buffers that grow in place); each family builds its attention masks and positions its own
way, so each is checked against its own generate(), with cache buffers that fill up and
grow at nearly every step. Three families attend through sliding windows shorter than the
sequences (Mistral's, and Gemma 2's and 3's beside full layers). Each runs with plain
weights and with weights packed for oneDNN (against generate() with the plain ones), with
a long prompt prefilled by chunks, and with prompts prefilled from a cached prefix.
"""

from __future__ import annotations

import pytest
import torch
import transformers as tf
from batch_script import decode_with_joins

from llmcloud.inference_image import kv_cache
from llmcloud.inference_image.batch_causal import CausalBatch, states_of
from llmcloud.inference_image.chunked_prefill import ChunkedPrefill
from llmcloud.inference_image.packed_linear import pack_linear_layers
from llmcloud.inference_image.prefix_cache import Prefix

SMALL = dict(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
             num_attention_heads=4, max_position_embeddings=256, pad_token_id=0,
             eos_token_id=1, bos_token_id=3)
FAMILIES = {
    "gpt2": (tf.GPT2Config, tf.GPT2LMHeadModel,
             dict(vocab_size=300, n_embd=64, n_layer=2, n_head=4, n_positions=256,
                  pad_token_id=0, eos_token_id=1, bos_token_id=3)),
    "qwen2": (tf.Qwen2Config, tf.Qwen2ForCausalLM, dict(SMALL, num_key_value_heads=2)),
    "mistral": (tf.MistralConfig, tf.MistralForCausalLM, dict(SMALL, num_key_value_heads=2)),
    "phi3": (tf.Phi3Config, tf.Phi3ForCausalLM, dict(SMALL, num_key_value_heads=4)),
    "opt": (tf.OPTConfig, tf.OPTForCausalLM,
            dict(vocab_size=300, hidden_size=64, ffn_dim=128, num_hidden_layers=2,
                 num_attention_heads=4, max_position_embeddings=256, pad_token_id=0,
                 eos_token_id=1, bos_token_id=3, word_embed_proj_dim=64)),
}
# Sliding-window attention (every layer, or every other: Gemma), windows shorter than the
# sequences here, so that what a token sees depends on where every position sits.
SLIDING = {
    "mistral-sliding": (tf.MistralConfig, tf.MistralForCausalLM,
                        dict(SMALL, num_key_value_heads=2, sliding_window=6)),
    "gemma2": (tf.Gemma2Config, tf.Gemma2ForCausalLM,
               dict(SMALL, num_key_value_heads=2, head_dim=16, sliding_window=6)),
    "gemma3": (tf.Gemma3TextConfig, tf.Gemma3ForCausalLM,
               dict(SMALL, num_key_value_heads=2, head_dim=16, sliding_window=6,
                    num_hidden_layers=3, layer_types=["sliding_attention", "sliding_attention",
                                                      "full_attention"])),
}
FAMILIES.update(SLIDING)
PROMPTS = [[5, 6, 7, 8, 9], [10, 11], [12, 13, 14, 15, 16, 17, 18], [20]]
LENGTHS = [12, 5, 12, 9]
JOINS = {0: [0, 1], 3: [2], 5: [3]}  # step -> prompts that join the batch then


def build(family: str) -> torch.nn.Module:
    config_class, model_class, params = FAMILIES[family]
    torch.manual_seed(0)
    model = model_class(config_class(**params)).eval()
    with torch.no_grad():  # EOS and pad never win the argmax: every row runs its length
        model.get_output_embeddings().weight[:2].zero_()
    return model


def generated(model, prompt: list[int], n: int) -> list[int]:
    with torch.inference_mode():
        return model.generate(torch.tensor([prompt]), max_new_tokens=n, min_new_tokens=n,
                              do_sample=False, pad_token_id=0)[0, len(prompt):].tolist()


@pytest.mark.parametrize("packed", [False, True], ids=["plain", "packed"])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_family_decodes_in_a_changing_batch_as_alone(monkeypatch, family, packed):
    monkeypatch.setattr(kv_cache, "MIN_ROOM", 1)
    model = build(family)
    expected = [generated(model, p, n) for p, n in zip(PROMPTS, LENGTHS, strict=True)]
    if packed:  # weights packed for oneDNN, as the server runs on CPU
        assert pack_linear_layers(model, batch_size=4) > 0
    batch = CausalBatch(model, torch.device("cpu"), pad_id=0)
    assert decode_with_joins(batch, PROMPTS, LENGTHS, JOINS) == expected


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_family_prefilled_by_chunks_decodes_as_alone(monkeypatch, family):
    """A long prompt prefilled 4 tokens at a time while another row decodes between the
    chunks, then joining that row's batch: both decode as they would alone."""
    monkeypatch.setattr(kv_cache, "MIN_ROOM", 1)
    model = build(family)
    short, long = [5, 6, 7], list(range(30, 53))  # 23 tokens: 6 chunks
    expected_short, expected_long = generated(model, short, 14), generated(model, long, 8)
    cpu = torch.device("cpu")
    batch = CausalBatch(model, cpu, pad_id=0)
    with torch.inference_mode():
        short_out = batch.prefill([short]).argmax(-1).tolist()
        chunking = ChunkedPrefill(CausalBatch(model, cpu, 0), row=None, ids=long, chunk=4)
        while (logits := chunking.step()) is None:
            short_out += batch.decode(short_out[-1:]).argmax(-1).tolist()
        batch.absorb(chunking.batch)
        long_out = logits.argmax(-1).tolist()
        while len(long_out) < 8:
            tokens = batch.decode([short_out[-1], long_out[-1]]).argmax(-1).tolist()
            short_out.append(tokens[0])
            long_out.append(tokens[1])
    assert long_out == expected_long
    assert len(short_out) == 13 and short_out == expected_short[:13]


def last_logprobs(model, ids: list[int]) -> torch.Tensor:
    with torch.inference_mode():
        return torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0, -1], -1)


@pytest.mark.parametrize(("family", "rests"), [
    *((family, ([60, 61, 62, 63, 64], [70, 71]))
      for family in sorted(set(FAMILIES) - set(SLIDING))),
    # a window counts padding too: rows from the store are grouped by their rest's length
    *((family, ([60, 61, 62], [70, 71, 72])) for family in sorted(SLIDING)),
])
def test_a_family_prefilled_from_a_cached_prefix_matches_the_whole_prompt(family, rests):
    """Three prompts prefilled together next to a running row: two from cached prefixes of
    their own (16 and 12 tokens, right-aligned, the rests left-padded after them: gaps the
    mask hides; with sliding windows, rests of one length, as the engine groups them), one
    without. Then decoding: every step's log probabilities match the model run on the whole
    sequence."""
    model = build(family)
    cpu = torch.device("cpu")
    starts = [list(range(40, 56)), list(range(80, 92))]
    prompts = [starts[0] + rests[0], starts[1] + rests[1], [90, 91, 92]]
    batch = CausalBatch(model, cpu, pad_id=0)
    with torch.inference_mode():
        batch.prefill([[5, 6, 7]])  # a running row
        prefixes = []
        for start in starts:
            source = CausalBatch(model, cpu, pad_id=0)
            source.prefill([start + [99]])
            prefixes.append(Prefix(start, states_of(source.cache, source.mask, 0, len(start))))
        logits = batch.prefill(prompts, prefixes=[*prefixes, None])
        sequences = [list(p) for p in prompts]
        for _ in range(4):
            tokens = logits.argmax(-1).tolist()
            for row, ids in enumerate(sequences):
                got = torch.log_softmax(logits[row], -1)
                assert torch.allclose(got, last_logprobs(model, ids), atol=1e-4), family
                ids.append(tokens[row])
            logits = batch.decode([7, *tokens])[1:]
