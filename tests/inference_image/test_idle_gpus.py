"""A server runs its model on one GPU; the others torch sees are counted, to be warned of."""

from __future__ import annotations

import torch

from llmcloud.inference_image.loader import idle_gpus


def test_gpus_besides_the_one_in_use_are_idle(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert idle_gpus(torch.device("cuda:0")) == 3
    assert idle_gpus(torch.device("cuda")) == 3
    assert idle_gpus(torch.device("cpu")) == 0  # a CPU server uses no GPU at all
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert idle_gpus(torch.device("cuda:0")) == 0
