"""The sampling controls held to their reference semantics, on many random cases (a fixed
seed, a few hundred cases, seconds): the server's adjust and sample steps, called directly,
against transformers' own logits processors chained in vLLM's order (logit bias, then the
repetition penalty, then OpenAI's frequency and presence penalties; temperature, min-p,
top-k, top-p), and greedy decoding end to end against ``generate()``."""

from __future__ import annotations

import random

import pytest
import torch
from transformers.generation.logits_process import (
    MinPLogitsWarper,
    RepetitionPenaltyLogitsProcessor,
    SequenceBiasLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from llmcloud.inference_image.engine import SamplingParams
from llmcloud.inference_image.sampling import adjust_logits, new_generator, sample

CPU = torch.device("cpu")


def reference_adjust(logits: torch.Tensor, params: SamplingParams, prompt: list[int],
                     output: list[int]) -> torch.Tensor:
    """One row [1, V] adjusted as vLLM does it (and generate(): sequence bias before the
    repetition penalty), with OpenAI's penalties over the output last."""
    ids = torch.tensor([[*prompt, *output]], dtype=torch.long)
    scores = logits.clone()
    if params.logit_bias:
        scores = SequenceBiasLogitsProcessor(
            {(t,): b for t, b in params.logit_bias})(ids, scores)
    if params.repetition_penalty != 1.0 and ids.numel():
        scores = RepetitionPenaltyLogitsProcessor(params.repetition_penalty)(ids, scores)
    for token in set(output):
        scores[0, token] -= (output.count(token) * params.frequency_penalty
                             + params.presence_penalty)
    return scores


def test_adjust_logits_applies_bias_and_penalties_in_vllms_order():
    # The logit bias comes before the repetition penalty in vLLM (and in generate(), as
    # sequence_bias): a biased token already seen has (logit + bias) / penalty, not
    # logit / penalty + bias.
    rnd, gen = random.Random(0), torch.Generator().manual_seed(0)
    vocab, rows = 40, 4
    for _ in range(100):
        logits = torch.randn(rows, vocab, generator=gen) * 3
        params, prompts, outputs = [], [], []
        for _ in range(rows):
            prompts.append([rnd.randrange(vocab) for _ in range(rnd.randrange(6))])
            outputs.append([rnd.randrange(vocab) for _ in range(rnd.randrange(8))])
            bias = tuple((t, rnd.uniform(-10, 10))
                         for t in rnd.sample(range(vocab), rnd.randrange(4)))
            params.append(SamplingParams(
                max_tokens=1, repetition_penalty=rnd.choice([1.0, 0.7, 1.3, 2.0]),
                frequency_penalty=rnd.choice([0.0, 0.5, -0.5, 2.0]),
                presence_penalty=rnd.choice([0.0, 1.0, -1.0]), logit_bias=bias))
        got = adjust_logits(logits, params, outputs, prompts)
        for i, p in enumerate(params):
            want = reference_adjust(logits[i:i + 1], p, prompts[i], outputs[i])
            torch.testing.assert_close(got[i:i + 1], want, msg=lambda m, p=p: f"{p}: {m}")


def test_a_biased_token_in_the_prompt_is_penalized_after_its_bias():
    # the smallest case: logit 2, bias +4, penalty 2 -> vLLM's (2 + 4) / 2 = 3
    logits = torch.tensor([[2.0, 3.5]])
    params = SamplingParams(max_tokens=1, repetition_penalty=2.0, logit_bias=((0, 4.0),))
    adjusted = adjust_logits(logits, [params], [[]], [[0]])
    assert adjusted.tolist() == [[3.0, 3.5]]
    assert sample(adjusted, [0.0], [1.0], [new_generator(0, CPU)]) == [1]  # not token 0


@pytest.fixture()
def drawn(monkeypatch):
    """The distributions sample() draws from, one per sampled row, as it draws."""
    seen: list[torch.Tensor] = []
    multinomial = torch.multinomial

    def recording(probs, n, *args, **kwargs):
        seen.append(probs / probs.sum())
        return multinomial(probs, n, *args, **kwargs)

    monkeypatch.setattr(torch, "multinomial", recording)
    return seen


def reference_probs(logits: torch.Tensor, temperature: float, top_p: float, top_k: int,
                    min_p: float) -> torch.Tensor:
    """One row's distribution with transformers' warpers in vLLM's order (temperature,
    min-p, top-k, top-p; top_k 0 or -1 and top_p 1 are off)."""
    ids = torch.zeros(1, 1, dtype=torch.long)
    scores = TemperatureLogitsWarper(temperature)(ids, logits.clone())
    if min_p > 0:
        scores = MinPLogitsWarper(min_p)(ids, scores)
    if top_k > 0:
        scores = TopKLogitsWarper(top_k)(ids, scores)
    if top_p < 1:
        scores = TopPLogitsWarper(top_p)(ids, scores)
    return torch.softmax(scores, dim=-1)[0]


def test_each_row_draws_from_the_warpers_distribution_whatever_the_batch(drawn):
    rnd, gen = random.Random(1), torch.Generator().manual_seed(1)
    vocab, rows = 60, 3
    for case in range(200):
        logits = torch.randn(rows, vocab, generator=gen) * rnd.choice([1, 3, 8])
        temps = [rnd.choice([0.3, 0.7, 1.0, 1.5]) for _ in range(rows)]
        top_ps = [rnd.choice([1.0, 0.9, 0.5, 0.2]) for _ in range(rows)]
        top_ks = [rnd.choice([0, -1, 1, 5, 20, 100]) for _ in range(rows)]
        min_ps = [rnd.choice([0.0, 0.05, 0.2]) for _ in range(rows)]
        drawn.clear()
        sample(logits, temps, top_ps, [new_generator(i, CPU) for i in range(rows)], top_ks,
               min_ps)
        for i in range(rows):
            want = reference_probs(logits[i:i + 1], temps[i], top_ps[i], top_ks[i], min_ps[i])
            what = f"case {case} row {i}: {temps[i]=} {top_ps[i]=} {top_ks[i]=} {min_ps[i]=}"
            assert torch.equal(drawn[i] > 0, want > 0), what
            torch.testing.assert_close(drawn[i], want, atol=1e-6, rtol=1e-4, msg=what)


def test_a_row_without_top_p_keeps_its_tail_next_to_a_row_with_top_p(drawn):
    # top_p 1 is off: the row's distribution is the softmax whole, as alone. Next to a
    # row with top_p < 1, the float32 cumulative sum reached 1.0 before the end of its
    # sorted vocabulary, and the tokens after (up to 3e-5 of the probability, for a real
    # vocabulary) could not be drawn: a seeded answer depended on its neighbours.
    gen = torch.Generator().manual_seed(1)
    for scale in (1.0, 2.0, 3.0, 4.0):
        logits = torch.randn(2, 151_936, generator=gen) * scale
        drawn.clear()
        sample(logits[:1], [1.0], [1.0], [new_generator(1, CPU)])
        sample(logits, [1.0, 1.0], [1.0, 0.9], [new_generator(1, CPU), new_generator(2, CPU)])
        alone, in_batch = drawn[0], drawn[1]
        assert torch.equal(in_batch > 0, alone > 0), (
            f"scale {scale}: {int((alone > 0).sum() - (in_batch > 0).sum())} tokens lost")


def test_a_seeded_row_draws_the_same_whatever_else_is_in_the_batch():
    rnd, gen = random.Random(2), torch.Generator().manual_seed(2)
    vocab = 50
    for _ in range(100):
        logits = torch.randn(4, vocab, generator=gen) * 2
        temps = [rnd.choice([0.0, 0.5, 1.0]) for _ in range(3)] + [0.8]
        top_ps = [rnd.choice([1.0, 0.9, 0.3]) for _ in range(3)] + [rnd.choice([1.0, 0.8])]
        top_ks = [rnd.choice([0, 3, 10]) for _ in range(3)] + [rnd.choice([0, 7])]
        min_ps = [rnd.choice([0.0, 0.1]) for _ in range(3)] + [rnd.choice([0.0, 0.05])]
        alone = sample(logits[3:], temps[3:], top_ps[3:], [new_generator(42, CPU)],
                       top_ks[3:], min_ps[3:])[0]
        in_batch = sample(logits, temps, top_ps,
                          [*(new_generator(None, CPU) for _ in range(3)),
                           new_generator(42, CPU)], top_ks, min_ps)[3]
        assert in_batch == alone


def test_zero_temperature_is_the_argmax_of_the_adjusted_logits_whatever_the_filters():
    rnd, gen = random.Random(3), torch.Generator().manual_seed(3)
    for _ in range(100):
        logits = torch.randn(3, 30, generator=gen) * 3
        params = [SamplingParams(max_tokens=1, temperature=0.0,
                                 repetition_penalty=rnd.choice([1.0, 1.5]),
                                 frequency_penalty=rnd.choice([0.0, 1.0]),
                                 logit_bias=((rnd.randrange(30), 5.0),)) for _ in range(3)]
        outputs = [[rnd.randrange(30) for _ in range(5)] for _ in range(3)]
        adjusted = adjust_logits(logits, params, outputs, [[1, 2]] * 3)
        tokens = sample(adjusted, [0.0] * 3, [0.1, 0.5, 0.9],
                        [new_generator(None, CPU) for _ in range(3)], [1, 2, -1],
                        [0.5, 0.0, 0.9])
        assert tokens == adjusted.argmax(-1).tolist()


def test_greedy_with_a_bias_and_a_repetition_penalty_decodes_as_generate(causal):
    # generate(repetition_penalty=..., sequence_bias=...) biases before it penalizes, as
    # vLLM does; the engine's greedy row must say the same.
    from test_sampling_controls import PROMPTS, make_engine, run

    prompt = causal.tokenizer(PROMPTS[1])["input_ids"]
    bias = {token: 1.0 for token in sorted(set(prompt))}  # every prompt token, +1
    params = SamplingParams(max_tokens=12, temperature=0, repetition_penalty=3.0,
                            logit_bias=tuple(bias.items()))
    (tokens, _), = run(make_engine(causal), [(prompt, params)])
    with torch.inference_mode():
        out = causal.model.generate(torch.tensor([prompt], device=causal.device),
                                    max_new_tokens=12, min_new_tokens=12, do_sample=False,
                                    repetition_penalty=3.0,
                                    sequence_bias={(t,): b for t, b in bias.items()})
    assert tokens == out[0, len(prompt):].tolist()


def test_a_seq2seq_repetition_penalty_counts_the_decoder_start_as_generate(seq2seq):
    # generate() penalizes the decoder's input ids, which begin with the decoder start
    # token (T5's pad, BART's </s>): a token it favours at the first step is penalized
    # there already. The bias makes the start token win the first step by less than the
    # penalty takes away, so the two differ from the first token when it is left out.
    from test_sampling_controls import make_engine, run

    model, device = seq2seq.model, seq2seq.device
    prompt = seq2seq.tokenizer("translate English to French: the house is blue")["input_ids"]
    start = model.config.decoder_start_token_id
    with torch.inference_mode():
        first = model(input_ids=torch.tensor([prompt], device=device),
                      decoder_input_ids=torch.tensor([[start]], device=device)
                      ).logits[0, -1].float().cpu()
    best_other = float(torch.cat([first[:start], first[start + 1:]]).max())
    assert best_other > 0  # else a penalty divides nothing
    bias = {start: 2 * best_other - float(first[start])}  # biased: twice the best other
    params = SamplingParams(max_tokens=6, temperature=0, repetition_penalty=3.0,
                            logit_bias=tuple(bias.items()))
    (tokens, _), = run(make_engine(seq2seq), [(prompt, params)])
    with torch.inference_mode():
        out = model.generate(torch.tensor([prompt], device=device), max_new_tokens=6,
                             min_new_tokens=6, do_sample=False, repetition_penalty=3.0,
                             sequence_bias={(t,): b for t, b in bias.items()})
    assert tokens == out[0, 1:].tolist()
