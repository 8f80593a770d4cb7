"""A prefill runs the last layer's MLP for the last position only, where the model allows.

The architecture checks (`test_architectures.py`) decode every family against its own
generate() with this in effect; these tests show that it is in effect, that it leaves the
logits as they were, that prompts whose every position is scored run whole, and that a
model whose last logits it would change is found out by the probe and runs whole.
"""

from __future__ import annotations

import pytest
import torch
import transformers as tf
from test_architectures import FAMILIES, build

from llmcloud.inference_image import last_position
from llmcloud.inference_image.batch_causal import CausalBatch

PROMPTS = [[5, 6, 7, 8, 9, 10, 11], [12, 13, 14]]


def mlp_rows(model) -> list[int]:
    """Records, for each call of the last layer's MLP, how many positions it ran."""
    seen: list[int] = []
    mlp = last_position._last_layer_mlp(model)
    mlp.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[1]))
    return seen


def whole_logits(model, prompts) -> torch.Tensor:
    """Each prompt's next-token logits, run alone and whole [k, V]."""
    with torch.inference_mode():
        return torch.cat([model(input_ids=torch.tensor([p])).logits[:, -1] for p in prompts])


@pytest.mark.parametrize("family", sorted(f for f in FAMILIES if f != "opt"))
def test_a_prefill_runs_the_last_mlp_for_the_last_position_with_the_same_logits(family):
    model = build(family)
    expected = whole_logits(model, PROMPTS)
    batch = CausalBatch(model, torch.device("cpu"), pad_id=0)
    seen = mlp_rows(model)  # hooked after the cut's hooks: sees what the MLP is given
    with torch.inference_mode():
        logits = batch.prefill(PROMPTS)
    assert batch._last_mlp.checked is True
    assert seen[-1] == 1  # the prefill's own run (the probe's came before it)
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)


def test_every_position_scored_runs_the_mlp_whole():
    model = build("qwen2")
    with torch.inference_mode():
        expected = model(input_ids=torch.tensor([PROMPTS[0]])).logits[0]
    batch = CausalBatch(model, torch.device("cpu"), pad_id=0)
    seen = mlp_rows(model)
    with torch.inference_mode():
        batch.prefill(PROMPTS[1:])  # the probe runs here
        seen.clear()
        logits = batch.prefill(PROMPTS[:1], every_position=True)
    assert seen == [len(PROMPTS[0])]
    torch.testing.assert_close(logits[0], expected, rtol=1e-4, atol=1e-4)


def test_a_model_without_an_mlp_module_runs_as_it_is():
    model = build("opt")  # OPT's layers run fc1 and fc2 themselves
    assert last_position.for_model(model) is None
    with torch.inference_mode():
        logits = CausalBatch(model, torch.device("cpu"), pad_id=0).prefill(PROMPTS)
    torch.testing.assert_close(logits, whole_logits(model, PROMPTS), rtol=1e-4, atol=1e-4)


class _MixingLayer(torch.nn.Module):
    """A decoder layer that mixes its MLP's output across positions (a running sum): the
    last position's output depends on every position's MLP."""

    def __init__(self, layer):
        super().__init__()
        self.inner = layer
        self.mlp = layer.mlp

    def forward(self, hidden_states, *args, **kwargs):
        out = self.inner(hidden_states, *args, **kwargs)
        out = out[0] if isinstance(out, tuple) else out
        return out + self.mlp(hidden_states).cumsum(dim=1)


class _TupleMLP(torch.nn.Module):
    """An MLP that returns (output, router logits), as mixtures of experts do."""

    def __init__(self, mlp):
        super().__init__()
        self.inner = mlp

    def forward(self, hidden_states):
        return self.inner(hidden_states), None


def _llama_with_last_layer(wrap) -> torch.nn.Module:
    torch.manual_seed(0)
    config = tf.LlamaConfig(vocab_size=300, hidden_size=64, intermediate_size=128,
                            num_hidden_layers=2, num_attention_heads=4,
                            max_position_embeddings=256, pad_token_id=0)
    model = tf.LlamaForCausalLM(config).eval()
    wrap(model.model.layers)
    return model


def test_a_model_whose_last_logits_the_cut_would_change_runs_whole():
    def mixing(layers):
        layers[-1] = _MixingLayer(layers[-1])
        with torch.no_grad():  # random weights' MLPs add little: make what they add count
            layers[-1].mlp.down_proj.weight.mul_(50)

    model = _llama_with_last_layer(mixing)
    expected = whole_logits(model, PROMPTS[:1])
    batch = CausalBatch(model, torch.device("cpu"), pad_id=0)
    seen = mlp_rows(model)
    with torch.inference_mode():
        logits = batch.prefill(PROMPTS[:1])
    assert batch._last_mlp.checked is False
    assert set(seen[-2:]) == {len(PROMPTS[0])}  # the layer's own MLP run and its mix, whole
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)


def test_an_mlp_that_returns_a_tuple_runs_whole():
    torch.manual_seed(0)
    mlp = _TupleMLP(torch.nn.Linear(8, 8))
    hooks = last_position.LastPositionMLP(mlp)
    hidden = torch.randn(2, 5, 8)
    with torch.inference_mode():  # run whole, it works; cut, its output cannot be widened
        assert hooks.check(lambda: mlp(hidden)[0]) is False
    assert hooks.enabled is False
    assert mlp(hidden)[0].shape == (2, 5, 8)  # and it runs whole from then on


def test_the_cut_holds_only_in_the_thread_that_enabled_it():
    # The engine's thread enables it around its own runs; another thread running the same
    # model meanwhile (a reference computed while the engine works) gets it whole.
    import threading

    model = build("qwen2")
    hooks = last_position.for_model(model)
    seen = mlp_rows(model)
    ids = torch.tensor([PROMPTS[0]])

    def run():
        with torch.inference_mode():
            model(input_ids=ids)

    hooks.enabled = True
    try:
        other = threading.Thread(target=run)
        other.start()
        other.join()
        run()
    finally:
        hooks.enabled = False
    assert seen == [len(PROMPTS[0]), 1]


def test_the_first_prefill_of_an_adapter_runs_with_its_adapter(causal_dir, tmp_path):
    # The probe runs the model's own weights before the first prefill: the rows' adapters
    # must be set again after it.
    from lora_adapters import build_adapter, merge

    from llmcloud.inference_image.loader import load_model
    from llmcloud.inference_image.lora import Adapters

    folder = build_adapter(tmp_path / "sql", causal_dir, seed=1)
    loaded = load_model(causal_dir, task=None, device="cpu", dtype="float32")
    adapters = Adapters(loaded.model)
    adapters.load("sql", folder, str(folder))
    merged = load_model(merge(causal_dir, folder, tmp_path / "merged"), task=None,
                        device="cpu", dtype="float32").model
    batch = CausalBatch(loaded.model, torch.device("cpu"), pad_id=0, adapters=adapters)
    with torch.inference_mode():
        logits = batch.prefill(PROMPTS, adapters=[adapters.slot("sql")] * 2)
    assert batch._last_mlp.checked is True
    torch.testing.assert_close(logits, whole_logits(merged, PROMPTS), rtol=1e-4, atol=1e-4)
