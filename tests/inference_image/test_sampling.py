"""Per-row sampling: greedy, seeds, temperature, top-p, top-k, min-p, penalties, biases, log
probabilities."""

from __future__ import annotations

import pytest
import torch

from llmcloud.inference_image.engine import SamplingParams
from llmcloud.inference_image.sampling import adjust_logits, new_generator, sample, token_logprobs

CPU = torch.device("cpu")


def test_zero_temperature_is_argmax():
    logits = torch.randn(4, 50)
    gens = [new_generator(None, CPU) for _ in range(4)]
    assert sample(logits, [0.0] * 4, [1.0] * 4, gens) == logits.argmax(-1).tolist()


def test_a_vanishing_temperature_is_greedy_not_a_failed_step():
    # 1e-200 turned the logits into inf and the softmax into NaN: the step, and every
    # request in the batch, failed (found by test_field_combinations)
    logits = torch.randn(3, 50)
    gens = [new_generator(s, CPU) for s in range(3)]
    assert sample(logits, [1e-200, 1e-6, 0.0], [1.0] * 3, gens) == logits.argmax(-1).tolist()


def test_overflowed_logits_are_drawn_from_not_a_failed_step():
    logits = torch.randn(3, 8)
    logits[0, 5] = float("inf")  # e.g. a positive logit divided by a tiny repetition penalty
    logits[1, :] = float("nan")  # a half-precision overflow
    logits[2, 2] = float("nan")
    gens = [new_generator(s, CPU) for s in range(3)]
    for _ in range(20):
        first, second, third = sample(logits, [1.0] * 3, [0.9] * 3, gens, [2] * 3, [0.1] * 3)
        assert first == 5 and 0 <= second < 8 and third != 2


def test_seed_reproduces_whatever_the_rest_of_the_batch():
    logits = torch.randn(3, 100)
    gens = [new_generator(None, CPU), new_generator(7, CPU), new_generator(None, CPU)]
    in_batch = sample(logits, [1.0] * 3, [1.0] * 3, gens)[1]
    alone = sample(logits[1:2], [1.0], [1.0], [new_generator(7, CPU)])[0]
    assert in_batch == alone
    draws = [sample(logits, [1.0] * 3, [1.0] * 3, [new_generator(i, CPU) for i in range(3)])
             for _ in range(2)]
    assert draws[0] == draws[1]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_tiny_top_p_keeps_only_the_most_likely_token(dtype):
    # 1e-46 rounds to 0 in float32 (1e-8 in float16), which once dropped every token and
    # failed the row: a 503 (found by fuzzing)
    logits = torch.randn(3, 100).to(dtype)
    gens = [new_generator(s, CPU) for s in (1, 2, 3)]
    for _ in range(20):
        assert sample(logits, [1.5] * 3, [1e-6, 1e-46, 1e-8], gens) == (
            logits.argmax(-1).tolist())


def test_top_p_limits_the_candidates():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    gen = new_generator(3, CPU)
    seen = {sample(logits, [1.0], [0.7], [gen])[0] for _ in range(300)}
    assert seen == {0, 1}


def test_top_k_and_min_p_limit_the_candidates_of_their_rows_only():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]] * 4))
    gens = [new_generator(s, CPU) for s in range(4)]
    seen: list[set[int]] = [set() for _ in range(4)]
    for _ in range(300):
        # top_k 1; top_k 2; min_p 0.5 (p >= 0.25); neither
        draws = sample(logits, [1.0] * 4, [1.0] * 4, gens, [1, 2, 0, 0], [0, 0, 0.5, 0])
        for row, token in enumerate(draws):
            seen[row].add(token)
    assert seen == [{0}, {0, 1}, {0, 1}, {0, 1, 2, 3}]
    # a row asking for neither draws as it would alone
    alone = sample(logits[3:], [1.0], [1.0], [new_generator(9, CPU)])
    in_batch = sample(logits, [1.0] * 4, [1.0] * 4,
                      [*(new_generator(s, CPU) for s in range(3)), new_generator(9, CPU)],
                      [1, 2, 0, 0], [0, 0, 0.5, 0])[3:]
    assert alone == in_batch


def test_repetition_penalty_divides_and_multiplies_the_seen_tokens():
    logits = torch.tensor([[2.0, -2.0, 1.0, -1.0, 0.5]])
    params = [SamplingParams(max_tokens=1, repetition_penalty=2.0)]
    out = adjust_logits(logits, params, [[1, 1]], [[0, 3, 0]])
    assert out.tolist() == [[1.0, -4.0, 1.0, -2.0, 0.5]]  # ids 0, 1, 3 seen, 2 and 4 not
    assert adjust_logits(logits, params, [[2]]).tolist() == [[2.0, -2.0, 0.5, -1.0, 0.5]]


def test_temperature_sampling_explores():
    logits = torch.zeros(1, 10)
    gen = new_generator(0, CPU)
    assert len({sample(logits, [1.0], [1.0], [gen])[0] for _ in range(200)}) == 10


def test_no_penalties_leave_the_logits_as_they_are():
    logits = torch.randn(2, 10)
    params = [SamplingParams(max_tokens=4), SamplingParams(max_tokens=4, temperature=0)]
    assert adjust_logits(logits, params, [[1, 2], [3]]) is logits


def test_penalties_and_biases_follow_openais_formula():
    logits = torch.zeros(3, 6)
    params = [
        SamplingParams(max_tokens=4, frequency_penalty=0.5, presence_penalty=1.0),
        SamplingParams(max_tokens=4),
        SamplingParams(max_tokens=4, presence_penalty=-2.0, logit_bias=((5, 100.0), (0, -7.5),
                                                                         (99, 3.0))),
    ]
    outputs = [[2, 2, 2, 4], [1, 1], [3]]
    adjusted = adjust_logits(logits, params, outputs)
    # token 2 appeared 3 times: 3 * 0.5 + 1.0; token 4 once: 0.5 + 1.0
    assert adjusted[0].tolist() == [0, 0, -2.5, 0, -1.5, 0]
    assert adjusted[1].tolist() == [0] * 6  # untouched: it asked for nothing
    # a negative presence penalty favours what was said; id 99 is past the output layer
    assert adjusted[2].tolist() == [-7.5, 0, 0, 2.0, 0, 100.0]
    assert logits.eq(0).all()  # the caller's logits (kept for log probabilities) unchanged


def test_token_logprobs_are_the_log_softmax_with_the_top_k_in_order():
    logits = torch.randn(3, 40)
    entries = token_logprobs(logits, [0, 2], [5, 7], [3, 0])
    expected = torch.log_softmax(logits, dim=-1)
    assert [e.token_id for e in entries] == [5, 7]
    assert entries[0].logprob == pytest.approx(expected[0, 5].item(), abs=1e-6)
    assert entries[1].logprob == pytest.approx(expected[2, 7].item(), abs=1e-6)
    values, ids = expected[0].topk(3)
    assert [i for i, _ in entries[0].top] == ids.tolist()
    assert [lp for _, lp in entries[0].top] == pytest.approx(values.tolist(), abs=1e-6)
    assert entries[1].top == ()


def test_allowed_tokens_leave_only_them_to_sample_in_their_row():
    logits = torch.tensor([[5.0, 1.0, 2.0, 3.0], [5.0, 1.0, 2.0, 3.0]])
    params = [SamplingParams(8, allowed_token_ids=(1, 2)), SamplingParams(8)]
    adjusted = adjust_logits(logits, params, [[], []])
    assert adjusted[0].tolist() == [float("-inf"), 1.0, 2.0, float("-inf")]
    assert adjusted[1].tolist() == logits[1].tolist()
    assert sample(adjusted, [0.0, 0.0], [1.0, 1.0], [None, None]) == [2, 0]


def test_a_bad_words_last_token_is_banned_only_after_the_rest_of_it():
    logits = torch.tensor([[1.0, 2.0, 3.0, 4.0]] * 3)
    words = ((3,), (1, 2))  # a one-token word, and a two-token one: 1 then 2
    params = [SamplingParams(8, bad_words_ids=words)] * 3
    adjusted = adjust_logits(logits, params, [[], [0, 1], [1, 0]])
    inf = float("-inf")
    assert adjusted[0].tolist() == [1.0, 2.0, 3.0, inf]  # 2 only after 1
    assert adjusted[1].tolist() == [1.0, 2.0, inf, inf]  # the output ends with 1
    assert adjusted[2].tolist() == [1.0, 2.0, 3.0, inf]


def test_allowed_tokens_win_over_bad_words_that_would_ban_them_all():
    params = [SamplingParams(8, allowed_token_ids=(3,), bad_words_ids=((3,),))]
    adjusted = adjust_logits(torch.tensor([[1.0, 2.0, 3.0, 4.0]]), params, [[]])
    assert sample(adjusted, [0.0], [1.0], [None]) == [3]
