"""Per-row sampling: greedy, seeds, temperature and top-p."""

from __future__ import annotations

import torch

from llmcloud.inference_image.sampling import new_generator, sample

CPU = torch.device("cpu")


def test_zero_temperature_is_argmax():
    logits = torch.randn(4, 50)
    gens = [new_generator(None, CPU) for _ in range(4)]
    assert sample(logits, [0.0] * 4, [1.0] * 4, gens) == logits.argmax(-1).tolist()


def test_seed_reproduces_whatever_the_rest_of_the_batch():
    logits = torch.randn(3, 100)
    gens = [new_generator(None, CPU), new_generator(7, CPU), new_generator(None, CPU)]
    in_batch = sample(logits, [1.0] * 3, [1.0] * 3, gens)[1]
    alone = sample(logits[1:2], [1.0], [1.0], [new_generator(7, CPU)])[0]
    assert in_batch == alone
    draws = [sample(logits, [1.0] * 3, [1.0] * 3, [new_generator(i, CPU) for i in range(3)])
             for _ in range(2)]
    assert draws[0] == draws[1]


def test_tiny_top_p_keeps_only_the_most_likely_token():
    logits = torch.randn(2, 100)
    gens = [new_generator(s, CPU) for s in (1, 2)]
    for _ in range(20):
        assert sample(logits, [1.5, 1.5], [1e-6, 1e-6], gens) == logits.argmax(-1).tolist()


def test_top_p_limits_the_candidates():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    gen = new_generator(3, CPU)
    seen = {sample(logits, [1.0], [0.7], [gen])[0] for _ in range(300)}
    assert seen == {0, 1}


def test_temperature_sampling_explores():
    logits = torch.zeros(1, 10)
    gen = new_generator(0, CPU)
    assert len({sample(logits, [1.0], [1.0], [gen])[0] for _ in range(200)}) == 10
